"""kill -9 of the coordinator at a random point of every phase (sum, update, sum2, unmask),
and one SIGTERM (a rolling restart), each followed by a restart on the same Redis: nothing a
participant was told `accepted` is lost, every sender finishes, every global model is the
exact mean of exactly the updates it names, and the completed-rounds counter survives."""

from __future__ import annotations

import signal
from pathlib import Path
from random import Random

from tests.faults.harness import FaultBed, report


def test_kill_9_in_every_phase_loses_nothing(tmp_path: Path, fault_seed: int) -> None:
    rng = Random(fault_seed)
    phases = ["sum", "update", "sum2", "unmask"]
    rng.shuffle(phases)  # one round per phase, in a random order
    with FaultBed(tmp_path, rng) as bed:
        for phase in phases:
            bed.kill_coordinator(phase, down=rng.uniform(0, 1))
        bed.kill_coordinator(rng.choice(["sum", "update", "sum2"]), sig=signal.SIGTERM)
        result = bed.finish()
    text = report(result, fault_seed, bed.faults)
    print(text)
    assert not result.problems(), text
    unpublished = [f["round_id"] for f in bed.faults if f["round_id"] not in result.included]
    assert not unpublished, f"faulted rounds {unpublished} published no global model\n{text}"
    assert result.updates_accepted >= 3 * len(phases), f"too few updates to show anything\n{text}"
    graceful = bed.faults[-1]
    assert graceful["exit_code"] == 0, f"SIGTERM must end the coordinator with exit code 0\n{text}"
    reset = [f for f in bed.faults if (f["rounds_completed"][1] or 0) < (f["rounds_completed"][0] or 0)]
    assert not reset, f"rounds_completed went back after a restart: {reset}\n{text}"
