"""Failover time: kill -9 of the lease holder between two chunks of an update, until the
standby's first `accepted` answer (real redis-server, two real coordinator processes, the
hand-driven multipart round of tests/coordinator/test_failover.py, every update checked in
the round's model). Measured here rather than asserted in the test: a wall-clock bound in a
test fails on a busy machine.

Usage: python -m benchmarks failover [--runs 5] [--ttl 3 6]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks._timing import machine
from tests.coordinator.test_failover import kill_9_during_a_round


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks failover")
    parser.add_argument("--runs", type=int, default=5, help="kill -9 runs per lease TTL")
    parser.add_argument("--ttl", type=float, nargs="+", default=[3.0, 6.0], help="lease TTLs (seconds)")
    options = parser.parse_args(argv)
    console = Console()
    console.print(machine())
    table = Table(title="kill -9 of the holder → first `accepted` by the standby")
    for column in (
        "lease TTL s",
        "runs",
        "median s",
        "min s",
        "max s",
        "TTL + TTL/6 s",
        "updates kept",
    ):
        table.add_column(column, justify="right")
    for ttl in options.ttl:
        seconds: list[float] = []
        kept = 0
        for _ in range(options.runs):
            with tempfile.TemporaryDirectory(prefix="xaynet-failover-") as tmp:
                failover = kill_9_during_a_round(Path(tmp), ttl)
                seconds.append(failover.seconds)
                kept += failover.included == {0, 1, 2}
        table.add_row(
            f"{ttl:g}",
            str(options.runs),
            f"{statistics.median(seconds):.2f}",
            f"{min(seconds):.2f}",
            f"{max(seconds):.2f}",
            f"{ttl + ttl / 6:.2f}",
            f"{kept}/{options.runs}",
        )
    console.print(table)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
