"""Small timing helpers shared by the benchmarks: median of repeats, and a result table."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table


def median_seconds(
    action: Callable[[], object], repeats: int, setup: Callable[[], object] | None = None, number: int = 1
) -> float:
    """Median over `repeats` samples of the time per call, each sample timing `number` calls.

    `setup` runs before each sample, untimed. Batching (`number` > 1) keeps timer noise out of
    sub-millisecond figures.
    """
    samples = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        start = time.perf_counter()
        for _ in range(number):
            action()
        samples.append((time.perf_counter() - start) / number)
    return statistics.median(samples)


@dataclass(frozen=True)
class Row:
    what: str
    size: str
    seconds: float
    floor_what: str
    floor_seconds: float
    target: float | None = None

    @property
    def ratio(self) -> float:
        return self.seconds / self.floor_seconds if self.floor_seconds else float("inf")


def machine() -> str:
    import os

    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def print_rows(title: str, rows: list[Row]) -> None:
    table = Table(title=title)
    for column in ("operation", "size", "ms", "floor", "floor ms", "ratio", "target"):
        table.add_column(column, justify="right" if column not in ("operation", "floor") else "left")
    for row in rows:
        verdict = ""
        if row.target is not None:
            verdict = f"≤ {row.target:g}× {'ok' if row.ratio <= row.target else 'MISSED'}"
        table.add_row(
            row.what,
            row.size,
            f"{row.seconds * 1e3:.2f}",
            row.floor_what,
            f"{row.floor_seconds * 1e3:.2f}",
            f"{row.ratio:.2f}×",
            verdict,
        )
    Console(width=140).print(table)
    print(f"machine: {machine()}")
