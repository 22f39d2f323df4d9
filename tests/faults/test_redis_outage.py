"""Redis stopped (SIGSTOP) and killed (kill -9, then started again on its data) in the middle
of an Update phase: every update a participant was told `accepted` is in the model, every
sender finishes, the model is exact. The outage lasts `XAYNET_FAULT_OUTAGE_SECONDS` (CI: 10 s;
`python -m benchmarks.faults` runs 30 s)."""

from __future__ import annotations

from pathlib import Path
from random import Random

from tests.faults.harness import FaultBed, Timing, report


def test_redis_stopped_then_killed_mid_update_loses_nothing(
    tmp_path: Path, fault_seed: int, outage_seconds: float
) -> None:
    rng = Random(fault_seed)
    # Phase deadlines well beyond the outage: a round that times out is the protocol's
    # rule, not a fault; what must not happen is losing what was accepted.
    timing = Timing(max_time=max(60.0, 3 * outage_seconds))
    with FaultBed(tmp_path, rng, timing=timing) as bed:
        bed.stop_redis("stop", outage_seconds)
        bed.stop_redis("kill", outage_seconds)
        result = bed.finish()
    text = report(result, fault_seed, bed.faults)
    print(text)
    assert not result.problems(), text
    unpublished = [f["round_id"] for f in bed.faults if f["round_id"] not in result.included]
    assert not unpublished, f"rounds {unpublished} with a Redis outage published no global model\n{text}"
