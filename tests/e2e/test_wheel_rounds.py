"""The reference wheel completes rounds against `xaynet coordinator`, and every global model
is exactly the mean of the updates that round aggregated."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import models
from tests.processes import coordinator_process, free_port, pet_config, redis_server, wait_until
from xaynet.core.mask.config import DataType
from xaynet.core.mask.model import GlobalModel

pytest.importorskip("xaynet_sdk", reason="the reference wheel xaynet-sdk-python==0.1.0 is not installed")

DRIVER = Path(__file__).with_name("wheel_driver.py")
PARTICIPANTS = 10
HEAD = 4
LENGTH = HEAD + PARTICIPANTS


@contextlib.contextmanager
def wheel_participants(
    url: str,
    out: Path,
    groups: int = 2,
    first: int = 0,
    count: int = PARTICIPANTS,
    total: int = PARTICIPANTS,
    head: int = HEAD,
) -> Iterator[list[Path]]:
    per_group = count // groups
    outputs = [out / f"received-{g}.json" for g in range(groups)]
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                str(DRIVER),
                url,
                str(first + g * per_group),
                str(per_group),
                str(total),
                str(head + total),
                str(outputs[g]),
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(out / f"wheel-{g}.log", "wb"),  # noqa: SIM115 - owned by the process
        )
        for g in range(groups)
    ]
    try:
        yield outputs
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


def check_global_model(model: GlobalModel) -> set[int]:
    return models.check_global_model(model, HEAD, PARTICIPANTS)


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_wheel_participants_complete_three_rounds(store: str, tmp_path: Path) -> None:
    export = tmp_path / "models"
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(redis_server(tmp_path)) if store == "redis" else None
        port = free_port()
        config = pet_config(LENGTH, port=port, redis_url=redis.url if redis else None, export=export)
        coordinator = stack.enter_context(coordinator_process(tmp_path, config, port))
        outputs = stack.enter_context(wheel_participants(coordinator.url, tmp_path))
        wait_until(lambda: coordinator.status()["rounds_completed"] >= 3, 240, "three completed rounds")
        status = coordinator.status()
        assert status["store"] == store
    models = sorted(export.glob("global-model-*.bin"))
    assert len(models) >= 3
    published = {}
    for path in models:
        model = GlobalModel.from_bincode(path.read_bytes())
        check_global_model(model)
        published[int(path.stem.rsplit("-", 1)[1])] = model.to_numpy(DataType.F32).tolist()
    # What the wheel's participants received is one of the published models, converted as
    # the original client does.
    received = [
        m for out in outputs if out.exists() for ms in json.loads(out.read_text()).values() for m in ms
    ]
    assert received, "no participant received a global model"
    assert all(m in published.values() for m in received)
