"""`python -m benchmarks round` end to end: it must print a complete, checked row for each run,
a FAILED row and a non-zero exit when a round fails, and one line for a setting it cannot
honour. No time is asserted (times are the benchmark's output, not its contract)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import flower_peer

ROOT = Path(__file__).resolve().parents[2]


def _round(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", "round", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("│┃").split("│" if "│" in line else "┃")]


def _row(output: str, label: str) -> dict[str, str]:
    """The first table row whose first cell is `label`, keyed by its table's column titles."""
    header: list[str] = []
    for line in output.splitlines():
        if line.startswith("┃"):
            header = _cells(line)
        elif line.startswith("│") and _cells(line)[0] == label:
            return dict(zip(header, _cells(line), strict=True))
    raise AssertionError(f"no row {label!r} in:\n{output}")


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_prints_a_checked_row_for_chunked_and_unchunked(store: str) -> None:
    small = ("-n", "20", "-l", "100", "-s", "1", "--skip-flower", "--warmup-rounds", "0")
    done = _round(*small, "--store", store)
    assert done.returncode == 0, done.stdout + done.stderr
    for label in ("ours, chunked 3,912 B", "ours, one message per update"):
        row = _row(done.stdout, label)
        assert float(row["whole round s"]) > 0
        assert int(row["aggregated"].split()[0].replace(",", "")) >= 3  # the coordinator's privacy floor
        assert row["check"].startswith("exact (test-drive)")
    assert re.search(r"S = 1 sum participants", done.stdout)
    assert f"store {store}" in done.stdout


def test_a_sum_count_the_participants_cannot_draw_is_one_line() -> None:
    done = _round("-n", "20", "-l", "100", "-s", "15", "--skip-flower", timeout=60)
    assert done.returncode != 0
    assert done.stderr.strip() == (
        "20 participants cannot reliably draw 15 sum participants and 3 updaters: lower -s or raise -n"
    )
    assert "running" not in done.stdout  # nothing was started


@pytest.mark.skipif(not flower_peer.available(), reason="flwr is not installed (the `flower` extra)")
@pytest.mark.parametrize("num_shares", [3, 5])
def test_flower_secagg_plus_round_gives_the_plain_mean(num_shares: int) -> None:
    result = flower_peer.run_round(participants=8, length=200, num_shares=num_shares)
    assert result.participants == 8
    assert result.threshold == flower_peer.threshold_for(num_shares)
    assert result.max_error <= result.tolerance  # within one quantisation step of Flower's defaults
    assert 0 < result.client_mask_seconds <= result.client_seconds
    assert result.whole_seconds >= result.server_seconds
