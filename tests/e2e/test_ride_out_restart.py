"""`xaynet test-drive -u` rides out a coordinator restart: its participants and its status
polling wait for the coordinator to come back, and every round is still checked exactly."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.processes import coordinator_process, free_port, pet_config, redis_server, wait_until


def test_test_drive_rides_out_a_coordinator_restart(tmp_path: Path) -> None:
    with redis_server(tmp_path) as redis:
        port = free_port()
        config = pet_config(4, port=port, redis_url=redis.url, times=(1, 1, 0.5))
        with coordinator_process(tmp_path, config, port) as coordinator:
            drive = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "xaynet",
                    "test-drive",
                    "-u",
                    coordinator.url,
                    "-n",
                    "10",
                    "--rounds",
                    "3",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                wait_until(lambda: coordinator.status()["rounds_completed"] >= 1, 120, "a first round")
                coordinator.kill(signal.SIGKILL)
                coordinator.start()
                out, err = drive.communicate(timeout=300)
            finally:
                drive.kill()
    assert drive.returncode == 0, out + err
    assert "Traceback" not in out + err
    assert "coordinator unreachable" in out and "coordinator is back after" in out
    assert "all global models equal the mean" in out
