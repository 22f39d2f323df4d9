"""`python -m benchmarks chunks` end to end, small: for each event loop asked for, both the
coordinator and the bare aiohttp floor server must really run on it (read back from the
processes), every update must be accepted (0 lost), and each row must carry a ratio. No time
is asserted (times are the benchmark's output, not its contract)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.chunks import Tally, best_ratio, paired_ratios

ROOT = Path(__file__).resolve().parents[2]
LOOPS = ["asyncio", "uvloop"] if importlib.util.find_spec("uvloop") is not None else ["asyncio"]


@pytest.mark.timeout(300)
def test_each_loop_is_measured_on_that_loop_and_nothing_is_lost() -> None:
    small = ["--store", "memory", "--length", "2000", "--chunks", "40", "--whole", "6", "--repeats", "2"]
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks", "chunks", *small, "--loop", *LOOPS, "--probe-healthz"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    for loop in LOOPS:
        summary = re.search(rf"memory, {loop} \(both servers\), L=2,000: .* lost: (\d+)", run.stdout)
        assert summary is not None, run.stdout
        assert summary.group(1) == "0"
        rows = [line for line in run.stdout.splitlines() if re.match(rf"│ memory\s+│ {loop}\s+│", line)]
        assert len(rows) == 2, run.stdout  # per chunk, per whole update
        assert all(re.search(r"\d\.\d\d×", row) for row in rows), rows
        assert re.search(
            rf"memory, {loop}, L=2,000: coordinator µs per whole update by thread: event loop \d+", run.stdout
        )
        assert re.search(
            rf"memory, {loop}, L=2,000: /healthz during the whole updates: \d+ answered: .*, none failed",
            run.stdout,
        )
        assert re.search(
            rf"memory, {loop}, L=2,000: participant CPU per chunk POST: our SDK's client \d+ µs, "
            r"a bare aiohttp session \d+ µs \(\d\.\d\d×\)",
            run.stdout,
        )


def test_each_repeat_is_divided_by_the_floor_run_beside_it() -> None:
    """A machine that slows down for the second repeat slows ours and its floor alike: the
    paired ratios stay 1.5× and 1.2×, where a ratio of sums would mix the two repeats."""
    ours, opened, bare = Tally(), Tally(), Tally()
    ours.add(cpu=3.0, wall=0.0, requests=2, messages=1)  # 1.5 s per request
    opened.add(cpu=1.0, wall=0.0, requests=2, messages=1)  # 0.5 + 0.5 → 1.0 s per request
    bare.add(cpu=1.0, wall=0.0, requests=2, messages=1)
    ours.add(cpu=12.0, wall=0.0, requests=2, messages=1)  # 6 s per request (a slow repeat)
    opened.add(cpu=8.0, wall=0.0, requests=2, messages=1)  # 4 + 1 → 5 s per request
    bare.add(cpu=2.0, wall=0.0, requests=2, messages=1)
    assert paired_ratios(ours, [opened, bare]) == pytest.approx([1.5, 1.2])
    assert paired_ratios(ours, [opened], per_message=True) == pytest.approx([3.0, 1.5])


def test_the_fastest_repeats_ratio_takes_each_floor_part_s_fastest() -> None:
    """Printed beside the target's median: ours' fastest batch against the floor's fastest parts."""
    ours, opened, bare = Tally(), Tally(), Tally()
    for mine, open_part, bare_part in ((3.0, 1.0, 1.0), (2.0, 1.6, 0.2), (5.0, 4.0, 2.0)):
        ours.add(cpu=mine, wall=0.0, requests=1, messages=1)
        opened.add(cpu=open_part, wall=0.0, requests=1, messages=1)
        bare.add(cpu=bare_part, wall=0.0, requests=1, messages=1)
    assert best_ratio(ours, [opened, bare]) == pytest.approx(2.0 / (1.0 + 0.2))
    assert best_ratio(ours, [opened], per_message=True) == pytest.approx(2.0)
