"""A round started by the previous release resumes on this one (the Redis layout is kept).

The previous build is the commit before multipart durability and the lease
(`PREVIOUS_RELEASE`), taken with `git archive` and run as its own process from its own tree:
it accepts a sum and two multipart updates, is killed with SIGKILL, and this build takes the
round over (no lease key yet, no `accepted` digests) and completes it exactly.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.coordinator.hand_round import HandRound
from tests.processes import (
    CoordinatorProcess,
    free_port,
    http_get,
    pet_config,
    redis_server,
    wait_until,
)

PREVIOUS_RELEASE = "6b891d6"
REPO = Path(__file__).resolve().parents[2]


def previous_build(target: Path) -> Path:
    """The previous release's tree. Missing history fails the test loudly: a skip here would
    let a layout change pass unnoticed."""
    if shutil.which("git") is None:
        pytest.fail("git is not installed: this test runs the previous release from git history")
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", PREVIOUS_RELEASE],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        pytest.fail(
            f"the previous release {PREVIOUS_RELEASE} is not in this checkout's history "
            "(a shallow clone?): run `git fetch --unshallow` (CI: fetch-depth 0)"
        )
    target.mkdir()
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def test_a_round_of_the_previous_release_resumes_here(tmp_path: Path) -> None:
    previous = previous_build(tmp_path / "previous")
    with redis_server(tmp_path) as redis:
        port = free_port()
        config = tmp_path / "config.toml"
        config.write_text(
            pet_config(
                7,
                port=port,
                redis_url=redis.url,
                sum_prob=0.5,
                min_update_count=3,
                times=(0, 0, 0),
                max_time=120,
            )
        )
        old_log = open(tmp_path / "previous.log", "wb")  # noqa: SIM115 - owned by the process
        old = subprocess.Popen(
            [sys.executable, "-m", "xaynet", "coordinator", "-c", str(config)],
            cwd=previous,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(previous)},
            stdout=old_log,
            stderr=subprocess.STDOUT,
        )
        new = CoordinatorProcess(config, port, tmp_path / "coordinator.log")
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: http_get(url + "/status", 1)[0] == 200, 30, "the previous build")
            assert "lease" not in json.loads(http_get(url + "/status")[1]), "this is the previous build"

            def take_over(index: int, _chunks: int, _who: bytes) -> None:
                updates = [bodies for bodies in round_.sent if len(bodies) > 2]
                if len(updates) == 3 and index == 0 and old.poll() is None:
                    old.send_signal(signal.SIGKILL)
                    old.wait(10)
                    new.start()
                    wait_until(lambda: http_get(url + "/status", 1)[0] == 200, 30, "this build")

            round_ = HandRound([url], before_chunk=take_over)
            round_id, _ = round_.run()
            assert old.returncode == -signal.SIGKILL
            status = json.loads(http_get(url + "/status")[1])
            assert status["lease"]["token"] >= 1
            assert "resuming interrupted round" in new.logs()
            assert round_.check(round_.model_of(round_id)) == {0, 1, 2}
        finally:
            if old.poll() is None:
                old.kill()
            new.kill(signal.SIGTERM)
            old_log.close()
