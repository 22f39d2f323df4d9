"""`xaynet participant` and `xaynet test-drive -u` against a running coordinator process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.processes import coordinator_process, free_port, pet_config


def test_participant_and_remote_test_drive(tmp_path: Path) -> None:
    port = free_port()
    model = tmp_path / "model.json"
    model.write_text("[0.5, -0.5, 0.25, 1.0]")
    with coordinator_process(tmp_path, pet_config(4, port=port, times=(1, 1, 0.5)), port) as coordinator:
        one = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "xaynet",
                "participant",
                "-u",
                coordinator.url,
                "--model",
                str(model),
                "--rounds",
                "1",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        drive = subprocess.run(
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
                "2",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        out, _ = one.communicate(timeout=120)
    assert drive.returncode == 0, drive.stdout + drive.stderr
    assert "against http://127.0.0.1" in drive.stdout
    assert one.returncode == 0, out
    assert "new round: model length 4, Prime/F32/B0/M3" in out
    assert "global model: 4 weights, sha256:" in out


def test_participant_reports_an_unreachable_coordinator() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "xaynet", "participant", "-u", f"http://127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1
    assert "error:" in result.stdout
