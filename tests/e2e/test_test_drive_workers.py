"""`xaynet test-drive --workers`: participants spread over driver processes, the embedded
coordinator in its own, each round still checked exactly, and a dying driver stops the run
with one line instead of a hang."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.processes import read_until, wait_until

XAYNET = [sys.executable, "-m", "xaynet"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ")[1][0] != "Z"  # a zombie has exited


def test_two_drivers_complete_rounds_with_the_exact_check(tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    result = subprocess.run(
        [*XAYNET, "test-drive", "-n", "12", "--rounds", "2", "-l", "50", "--workers", "2",
         "--json", str(summary)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "Traceback" not in out + result.stderr
    assert re.search(r"driver processes: pid \d+, \d+; coordinator pid \d+", out), out
    assert "phases end after at least: sum 2.5 s" in out  # the minimums are printed
    assert "all global models equal the mean" in out
    document = json.loads(summary.read_text())
    assert document["ok"] is True and document["workers"] == 2 and len(document["rounds"]) == 2
    for record in document["rounds"]:
        assert record["verdict"] == "ok" and record["max_error"] <= record["tolerance"]
        # every update the coordinator aggregated is in the drivers' running sums
        assert record["updates_known_accepted"] == record["accepted"]["update"] >= 3
        assert set(record["phase_seconds"]) >= {"sum", "update", "sum2"}
    peaks = document["peak_rss_mb"]
    assert peaks["coordinator"] > 0 and len(peaks["drivers"]) == 2 and all(p > 0 for p in peaks["drivers"])
    assert "peak memory (VmHWM): coordinator" in out


def test_a_killed_driver_stops_the_run_with_one_line_and_keeps_the_checked_rounds(tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    process = subprocess.Popen(
        [*XAYNET, "test-drive", "-n", "12", "--rounds", "50", "-l", "20", "--workers", "2",
         "--json", str(summary)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        before = read_until(process, "round 1 completed", 180)
        pids = re.search(r"driver processes: pid (\d+), (\d+); coordinator pid (\d+)", before)
        assert pids is not None, before
        first, second, coordinator = (int(pid) for pid in pids.groups())
        os.kill(second, signal.SIGKILL)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    output = before + out + err
    assert process.returncode == 1, output
    assert "Traceback" not in output
    assert "driver process 2 of 2 (participants 6–11) was killed by SIGKILL: stopping" in out, output
    assert "FAILED: a driver process died" in out
    # Nothing lost: every round reported as completed before the kill is in the summary, checked.
    completed = set(re.findall(r"round (\d+) completed: .*check: ok", output))
    document = json.loads(summary.read_text())
    assert document["ok"] is False and "SIGKILL" in document["died"]
    reported = {str(r["round_id"]) for r in document["rounds"] if r["verdict"] == "ok"}
    assert completed and completed == reported == {str(r["round_id"]) for r in document["rounds"]}
    # and no process is left behind
    wait_until(lambda: not _alive(first) and not _alive(coordinator), 30, "the other processes to exit")


def test_phase_minimums_are_options_and_checked_at_once() -> None:
    bad = subprocess.run(
        [*XAYNET, "test-drive", "-n", "12", "--min-sum-count", "50"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "xaynet test-drive: pet.min_sum_count (50) must be between 1 and pet.max_sum_count (12)"
    )
    remote = subprocess.run(
        [*XAYNET, "test-drive", "-u", "http://127.0.0.1:1", "--min-sum-time", "3"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert remote.returncode == 2
    assert "--min-sum-time set the embedded coordinator's phases; with -u, set them in its [pet]" in (
        remote.stderr
    )
