"""Two coordinators on one Redis namespace behind one Service (the proxy routes each request
to a ready one): kill -9 of the lease holder → the standby takes over within 10 s, the round
completes exactly, and no two holders ever accepted messages in overlapping intervals (from
the holder/token headers of every `accepted` answer)."""

from __future__ import annotations

import time
from pathlib import Path
from random import Random

from tests.faults.harness import FaultBed, Timing, holder_intervals, overlapping, report
from tests.processes import wait_until

TAKEOVER_LIMIT = 10.0


def test_standby_takes_over_after_kill_9_and_never_two_active(tmp_path: Path, fault_seed: int) -> None:
    rng = Random(fault_seed)
    # Short phase deadlines: a second coordinator that runs its own (empty) rounds times
    # out and wipes the shared namespace within the test (the bug the lease fixes).
    timing = Timing(max_time=15.0)
    with FaultBed(tmp_path, rng, coordinators=2, timing=timing) as bed:
        started = time.monotonic()
        wait_until(lambda: _has_holder(bed), 30, "a coordinator whose /status names itself the lease holder")
        # Let the standby idle past a phase deadline before the kill.
        wait_until(lambda: time.monotonic() - started > timing.max_time + 2, 30, "a phase deadline to pass")
        fault = bed.kill_holder(rng.choice(["sum", "update", "sum2"]))
        result = bed.finish()
        assert bed.proxy is not None
        intervals, unnamed = holder_intervals(bed.proxy.records())
    text = report(result, fault_seed, bed.faults)
    text += "\naccepting intervals: " + "; ".join(f"{h}/{t} {a:.2f}–{b:.2f}" for a, b, h, t in intervals)
    print(text)
    assert fault["takeover_seconds"] <= TAKEOVER_LIMIT, f"takeover took {fault['takeover_seconds']} s\n{text}"
    assert not result.problems(), text
    assert fault["round_id"] in result.included, f"the round of the kill published no model\n{text}"
    assert unnamed == 0, f"{unnamed} `accepted` answers named no lease holder/token header\n{text}"
    assert not overlapping(intervals), f"two coordinators accepted at once: {overlapping(intervals)}\n{text}"
    tokens = [int(t) for _, _, _, t in intervals]
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens), f"tokens must grow: {tokens}\n{text}"


def _has_holder(bed: FaultBed) -> bool:
    try:
        bed.active_index()
    except LookupError:
        return False
    return True
