"""A migrating user's participants, written like the original wheel's getting-started
examples, work against `xaynet coordinator` started with the original `configs/config.toml`.

The examples of XayNet v0.11.0 (bindings/python/examples) run "without changing the
coordinator config.toml". Besides the plain `ParticipantABC` rounds tested with the original
configs, they use: a participant that only downloads global models, an `AsyncParticipant`
driven by its notifier, and save/restore of its state (wheel_example_patterns.py). No
TensorFlow: the Keras example differs only in what it trains.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_original_configs import ORIGINALS
from tests.e2e.test_wheel_rounds import wheel_participants
from tests.processes import coordinator_process, free_port, http_get, redis_server, wait_until
from xaynet.core.mask.config import DataType
from xaynet.core.mask.model import GlobalModel

pytest.importorskip("xaynet_sdk", reason="the reference wheel xaynet-sdk-python==0.1.0 is not installed")

PATTERNS = Path(__file__).with_name("wheel_example_patterns.py")


def _read(path: Path) -> dict[str, object]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def test_the_original_examples_api_paths_complete_rounds(tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "patterns.json"
    with redis_server(tmp_path) as redis:
        env = {
            "XAYNET_API__BIND_ADDRESS": f"127.0.0.1:{port}",
            "XAYNET_REDIS__URL": redis.url,
            "XAYNET_MODEL_EXPORT__DIRECTORY": str(tmp_path / "models"),  # to check what they got
        }
        config = ORIGINALS["configs/config.toml"]
        with coordinator_process(tmp_path, config, port, env=env) as coordinator:
            patterns = subprocess.Popen(
                [sys.executable, str(PATTERNS), coordinator.url, str(out)],
                stdout=subprocess.DEVNULL,
                stderr=open(tmp_path / "patterns.log", "wb"),  # noqa: SIM115 - owned by the process
            )
            try:
                # 30 more wheel participants make the lottery (sum 0.5, update 0.9) draw enough.
                with wheel_participants(coordinator.url, tmp_path, groups=3, count=30, total=0, head=4):
                    wait_until(lambda: bool(_read(out).get("restored")), 120, "a restored participant")
                    wait_until(
                        lambda: bool(_read(out).get("download_only")) and bool(_read(out).get("async")),
                        300,
                        "a global model at the download-only and the async participant",
                    )
                code, body = http_get(coordinator.url + "/model")
                status = coordinator.status()
            finally:
                patterns.send_signal(signal.SIGTERM)
                try:
                    patterns.wait(20)
                except subprocess.TimeoutExpired:
                    patterns.kill()
    assert code == 200
    assert status["rounds_completed"] >= 1
    logs = (tmp_path / "patterns.log").read_text(errors="replace")
    assert "Traceback" not in logs, logs[-3000:]
    # Every model they received is a published global model, as the original client converts it.
    published = [
        GlobalModel.from_bincode(path.read_bytes()).to_numpy(DataType.F32).tolist()
        for path in sorted((tmp_path / "models").glob("global-model-*.bin"))
    ]
    assert published and published[-1] == GlobalModel.from_bincode(body).to_numpy(DataType.F32).tolist()
    result = _read(out)
    received = [*result["download_only"], *result["async"]]  # type: ignore[misc]
    assert received and all(model in published for model in received), (received, published)
