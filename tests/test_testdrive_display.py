"""What test-drive shows: the rounds table fits 100 columns without cutting a header, and the
piped lines carry each phase's real final count, with no line for a round it will not run."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from xaynet.testdrive.display import Display, _rounds_table
from xaynet.testdrive.driver import Options
from xaynet.testdrive.records import RoundRecord


def _record(round_id: int) -> RoundRecord:
    record = RoundRecord(
        seed=bytes(32), round_id=round_id, verdict="ok", max_error=6.5e-11, bytes_sent=123_456
    )
    record.selected = {"sum": 12, "update": 988}
    record.counts = {"sum": 12, "update": 987, "sum2": 12}
    record.phase_seconds = {"sum": 2.5, "update": 13.25, "sum2": 0.5, "unmask": 1.75}
    record.sdk_seconds["update"] = {1: 0.0123, 2: 0.0456}
    record.accuracy = 0.9123
    return record


@pytest.mark.parametrize("baseline", [None, 0.95])
def test_the_rounds_table_fits_100_columns(baseline: float | None) -> None:
    out = io.StringIO()
    Console(file=out, width=100, force_terminal=False).print(
        _rounds_table([_record(1), _record(120)], baseline)
    )
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "…" not in text
    for header in ("round", "sel s/u", "acc s/u/s2", "seconds s/u/s2/m", "sent MB", "SDK ms", "err", "check"):
        assert header in text
    assert "sum/update/sum2/unmask" in text  # the legend of the abbreviations


def _status(round_id: int, phase: str, **accepted: int) -> dict[str, Any]:
    counts = {p: {"accepted": accepted.get(p, 0)} for p in ("sum", "update", "sum2")}
    return {"round_id": round_id, "phase": phase, "counts": counts}


def test_piped_lines_show_real_counts_and_no_phantom_round(capsys: pytest.CaptureFixture[str]) -> None:
    display = Display(Options(rounds=1, live=False))
    completed: list[RoundRecord] = []
    for status in (
        _status(1, "sum", sum=1),
        _status(1, "sum", sum=3),
        _status(1, "update", sum=3, update=2),
        _status(1, "update", sum=3, update=7),
        _status(1, "sum2", sum=3, update=7, sum2=3),
    ):
        display.update(status, None, completed, 0, 0.0)
    record = _record(1)
    record.counts = {"sum": 3, "update": 7, "sum2": 3}
    record.accuracy = None  # random vectors: nothing to score
    completed.append(record)
    display.round_completed(record)
    display.update(_status(2, "sum"), None, completed, 0, 0.0)  # the coordinator's next round
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "round 1: phase sum started",
        "round 1: phase sum ended, 3 accepted",
        "round 1: phase update started",
        "round 1: phase update ended, 7 accepted",
        "round 1: phase sum2 started",
        "round 1: phase sum2 ended, 3 accepted",
        "round 1 completed: accepted sum 3, update 7, sum2 3; check: ok",
    ]


def test_uncounted_updaters_are_explained_one_line_per_round() -> None:
    from xaynet.testdrive.driver import not_counted_lines
    from xaynet.testdrive.records import RoundRecord

    gap = RoundRecord(b"a" * 32, round_id=3, accepted_updates=6)
    gap.selected = {"sum": 2, "update": 10}
    gap.refused = {"update": {"discarded/phase_full": 2}, "sum": {"rejected/wrong_phase": 1}}
    gap.dropped = {"update": 1, "sum2": 0}
    full = RoundRecord(b"b" * 32, round_id=4, accepted_updates=5)
    full.selected = {"sum": 2, "update": 5}
    assert not_counted_lines([gap, full]) == [
        "round 3: 10 selected to update, 6 accepted; not counted: 2 came when Update had its maximum: "
        "discarded/phase_full, "
        "1 stopped (the phase ended before the update was sent), 1 without a final answer"
    ]
