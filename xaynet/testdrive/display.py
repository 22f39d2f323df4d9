"""Progress while test-drive runs (live in a terminal, plain lines otherwise) and the report."""

from __future__ import annotations

import statistics
import sys
from types import TracebackType
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from xaynet.testdrive.records import RoundRecord

if TYPE_CHECKING:
    from xaynet.testdrive.driver import Options, Outcome

PHASES = ("sum", "update", "sum2", "unmask")


class Display:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.console = Console()
        self.live_mode = self.console.is_terminal if options.live is None else options.live
        self._live: Live | None = None
        self._last_line: tuple[Any, ...] | None = None

    def __enter__(self) -> Display:
        where = self.options.url or "an embedded coordinator (in-memory store)"
        self._print(
            f"test-drive: {self.options.participants} participants, {self.options.rounds} rounds, "
            f"{self.options.model_length} weights, against {where}"
        )
        if self.live_mode:
            self._live = Live(Text("starting…"), console=self.console, refresh_per_second=8, transient=True)
            self._live.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.__exit__(kind, error, trace)
            self._live = None

    def _print(self, line: str) -> None:
        if self.live_mode:
            self.console.print(line)
        else:
            print(line, flush=True)

    def note(self, line: str) -> None:
        self._print(line)

    def update(
        self,
        status: dict[str, Any],
        record: RoundRecord | None,
        completed: list[RoundRecord],
        failed: int,
        in_phase: float,
    ) -> None:
        counts = status.get("counts", {})
        accepted = {k: v.get("accepted", 0) for k, v in counts.items()}
        if self._live is not None:
            table = Table(show_header=True, header_style="bold")
            for column in ("round", "phase", "in phase", "sum", "update", "sum2", "done", "failed"):
                table.add_column(column, justify="right")
            table.add_row(
                str(status["round_id"]),
                str(status["phase"]),
                f"{in_phase:5.1f} s",
                str(accepted.get("sum", 0)),
                str(accepted.get("update", 0)),
                str(accepted.get("sum2", 0)),
                f"{len(completed)}/{self.options.rounds}",
                str(failed),
            )
            self._live.update(Group(table, _rounds_table(completed)))
            return
        line = (status["round_id"], status["phase"], len(completed))
        if line != self._last_line:
            self._last_line = line
            done = f"{len(completed)}/{self.options.rounds}"
            tally = ", ".join(f"{phase} {accepted.get(phase, 0)}" for phase in ("sum", "update", "sum2"))
            where = f"round {status['round_id']}: phase {status['phase']:<6}"
            self._print(f"{where} | accepted {tally} | completed {done}")

    def summary(self, outcome: Outcome) -> None:
        table = _rounds_table(outcome.completed)
        if self.live_mode:
            self.console.print(table)
        else:
            Console(file=sys.stdout, width=160, force_terminal=False).print(table)
        verdict = (
            "all global models equal the mean of the models their round aggregated"
            if outcome.ok
            else "FAILED"
        )
        if outcome.stalled:
            verdict = "FAILED: stalled (no round completed in time)"
        rounds = f"{len(outcome.completed)} rounds in {outcome.wall_seconds:.1f} s"
        self._print(f"{rounds}, {outcome.failed_rounds} failed by the coordinator (and retried): {verdict}")


def _rounds_table(completed: list[RoundRecord]) -> Table:
    table = Table(title="completed rounds", show_header=True, header_style="bold")
    for column in (
        "round",
        "selected sum",
        "selected update",
        "accepted sum",
        "accepted update",
        "accepted sum2",
        *(f"{p} s" for p in PHASES),
        "sent MB",
        "SDK ms/updater",
        "max |error|",
        "check",
    ):
        table.add_column(column, justify="right")
    for record in completed:
        sdk = record.sdk_seconds["update"]
        table.add_row(
            str(record.round_id),
            str(record.selected["sum"]),
            str(record.selected["update"]),
            str(record.counts.get("sum", "")),
            str(record.counts.get("update", "")),
            str(record.counts.get("sum2", "")),
            *(f"{record.phase_seconds[p]:.2f}" if p in record.phase_seconds else "-" for p in PHASES),
            f"{record.bytes_sent / 1e6:.1f}",
            f"{statistics.median(sdk.values()) * 1e3:.1f}" if sdk else "-",
            f"{record.max_error:.1e}" if record.max_error is not None else "-",
            record.verdict,
        )
    return table
