"""`xaynet participant` and `xaynet test-drive -u` against a running coordinator process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.processes import coordinator_process, free_port, pet_config, run_test_drive


def test_remote_test_drive(tmp_path: Path) -> None:
    port = free_port()
    with coordinator_process(tmp_path, pet_config(4, port=port, times=(1, 1, 0.5)), port) as coordinator:
        drive = run_test_drive(coordinator.url, rounds=2)
    assert drive.returncode == 0, drive.stdout + drive.stderr
    assert f"against {coordinator.url}" in drive.stdout


def test_participants_from_the_command_line_complete_a_round(tmp_path: Path) -> None:
    port = free_port()
    model = tmp_path / "model.json"
    model.write_text("[0.5, -0.5, 0.25, 1.0]")
    config = pet_config(4, port=port, times=(1, 1, 0.5), max_time=5)
    with coordinator_process(tmp_path, config, port) as coordinator:
        command = [sys.executable, "-m", "xaynet", "participant", "-u", coordinator.url, "--rounds", "1"]
        processes = [
            subprocess.Popen(
                [*command, "--model", str(model)] if i == 0 else [*command, "--seed", str(i)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(8)
        ]
        outputs = [p.communicate(timeout=240)[0] for p in processes]
    assert [p.returncode for p in processes] == [0] * 8, outputs
    assert "new round: model length 4, Prime/F32/B0/M3" in outputs[0]
    checksums = {line for out in outputs for line in out.splitlines() if line.startswith("global model:")}
    assert checksums, "every participant printed the global model it received"
    # A sum participant's second message is called "sum2" (one "sum" message per round at most).
    assert any("sent sum2 message" in out for out in outputs), outputs
    assert all(out.count("sent sum message") <= out.count("new round:") for out in outputs), outputs


def test_participant_reports_an_unreachable_coordinator() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = subprocess.run(
        [sys.executable, "-m", "xaynet", "participant", "-u", url, "--give-up-after", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1
    assert "error:" in result.stdout
