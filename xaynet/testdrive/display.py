"""Progress while test-drive runs (live in a terminal, plain lines otherwise) and the report."""

from __future__ import annotations

import statistics
import sys
import time
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
HEARTBEAT_SECONDS = 10.0  # piped output: a line at least this often while a phase lasts
LEGEND = (
    "s/u/s2/m: sum/update/sum2/unmask; sel: selected by the lottery; acc: accepted by the "
    "coordinator; SDK ms: median SDK time per updater; err: max |global - mean|"
)


class Display:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.console = Console()
        self.live_mode = self.console.is_terminal if options.live is None else options.live
        self._live: Live | None = None
        self._phase: tuple[Any, ...] | None = None  # (round, phase) of the last piped line
        self._last_status: dict[str, Any] | None = None
        self._last_printed = 0.0

    def __enter__(self) -> Display:
        where = self.options.url or "an embedded coordinator (in-memory store)"
        self._print(
            f"test-drive: {self.options.participants} participants, {self.options.rounds} rounds, "
            f"{self.options.workload.model_length(self.options.model_length)} weights, against {where}"
            f", {self.options.drivers} driver process(es)"
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
            self._live.update(Group(table, _rounds_table(completed, _baseline(self.options))))
            return
        if len(completed) >= self.options.rounds:
            return  # the coordinator already started the next round: not ours to report
        phase = (status["round_id"], status["phase"])
        now = time.monotonic()
        previous, self._last_status = self._last_status, status
        if phase != self._phase:
            if previous is not None and self._phase is not None and self._phase[1] in accepted:
                # The phase that just ended, with its final count: from this status while the
                # round is the same (counts last for the round), else the round's final report,
                # else the last poll before the change (which may miss the last few messages).
                ended_round, ended = self._phase
                last = status.get("last_round") or {}
                if status["round_id"] == ended_round:
                    source = status.get("counts", {})
                elif last.get("round_id") == ended_round:
                    source = last.get("counts", {})
                else:
                    source = previous.get("counts", {})
                count = source.get(ended, {}).get("accepted", 0)
                self._print(f"round {self._phase[0]}: phase {self._phase[1]} ended, {count} accepted")
            self._phase = phase
            self._print(f"round {phase[0]}: phase {phase[1]} started")
            self._last_printed = now
        elif now - self._last_printed >= HEARTBEAT_SECONDS:
            count = accepted.get(str(phase[1]), 0)
            self._print(f"round {phase[0]}: phase {phase[1]} for {in_phase:.0f} s, {count} accepted so far")
            self._last_printed = now

    def round_completed(self, record: RoundRecord) -> None:
        """Piped output: the completed round's real counts (from the coordinator) and its check."""
        if self.live_mode:
            return
        if self._phase is not None and self._phase[0] == record.round_id and self._phase[1] in record.counts:
            ended = self._phase[1]
            self._print(f"round {record.round_id}: phase {ended} ended, {record.counts[ended]} accepted")
            self._phase = (record.round_id, "completed")
        counts = ", ".join(f"{phase} {record.counts.get(phase, 0)}" for phase in ("sum", "update", "sum2"))
        accuracy = f"; test accuracy {record.accuracy:.1%}" if record.accuracy is not None else ""
        self._print(
            f"round {record.round_id} completed: accepted {counts}; check: {record.verdict}{accuracy}"
        )

    def summary(self, outcome: Outcome) -> None:
        table = _rounds_table(outcome.completed, _baseline(self.options))
        if self.live_mode:
            self.console.print(table)
        else:
            Console(file=sys.stdout, width=100, force_terminal=False).print(table)
        verdict = (
            f"all global models equal {self.options.workload.checked_against} of the models their round "
            "aggregated"
            if outcome.ok
            else "FAILED"
        )
        if outcome.stalled:
            verdict = "FAILED: stalled (no round completed in time)"
        if outcome.refused:
            verdict = "FAILED: a participant's model did not fit the round (see above)"
        if outcome.died:
            verdict = "FAILED: a driver process died (see above)"
        if outcome.interrupted:
            verdict = f"interrupted after {len(outcome.completed)} of {self.options.rounds} rounds"
        rounds = f"{len(outcome.completed)} rounds in {outcome.wall_seconds:.1f} s"
        self._print(f"{rounds}, {outcome.failed_rounds} failed by the coordinator (and retried): {verdict}")


def _baseline(options: Options) -> float | None:
    """The central baseline of a learning task (None for random vectors)."""
    baseline = getattr(options.workload, "baseline", None)
    return float(baseline) if baseline is not None else None


def _rounds_table(completed: list[RoundRecord], baseline: float | None = None) -> Table:
    """One row per completed round, in 100 columns: slashed groups and a legend (`LEGEND`).

    Learning tasks add the global model's test accuracy beside the central `baseline`."""
    scored = baseline is not None
    title = f"completed rounds (test accuracy of a central model: {baseline:.1%})" if scored else None
    table = Table(title=title or "completed rounds", caption=LEGEND, show_header=True, header_style="bold")
    for column in ("round", "sel s/u", "acc s/u/s2", "seconds s/u/s2/m", "sent MB", "SDK ms", "err", "check"):
        table.add_column(column, justify="right")
    if scored:
        table.add_column("accuracy", justify="right")
    for record in completed:
        sdk = record.sdk_seconds["update"]
        seconds = (f"{record.phase_seconds[p]:.1f}" if p in record.phase_seconds else "-" for p in PHASES)
        table.add_row(
            str(record.round_id),
            f"{record.selected['sum']}/{record.selected['update']}",
            "/".join(str(record.counts.get(p, "-")) for p in ("sum", "update", "sum2")),
            "/".join(seconds),
            f"{record.bytes_sent / 1e6:.1f}",
            f"{statistics.median(sdk.values()) * 1e3:.1f}" if sdk else "-",
            f"{record.max_error:.0e}" if record.max_error is not None else "-",
            record.verdict,
            *([f"{record.accuracy:.1%}" if record.accuracy is not None else "-"] if scored else []),
        )
    return table
