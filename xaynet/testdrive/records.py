"""What test-drive observes per round, and the check of each global model.

Participants are identified by index; participant i's model in a round is drawn from a
generator seeded by (i, round seed), so the driver can recompute every model a round
aggregated and compare the published global model with their plain mean.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from xaynet.core.mask.model import GlobalModel

TOLERANCE = 1e-9  # the encoding floors each weight to 1e-10 (MASKING.md §3)


def local_model(index: int, round_seed: bytes, length: int) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng([index, int.from_bytes(round_seed[:8], "little")])
    return rng.uniform(-1.0, 1.0, length).astype(np.float32)


@dataclass
class RoundRecord:
    seed: bytes
    round_id: int | None = None
    model_length: int = 0
    selected: dict[str, int] = field(default_factory=lambda: {"sum": 0, "update": 0})
    accepted_updates: set[int] = field(default_factory=set)
    bytes_sent: int = 0
    sdk_seconds: dict[str, dict[int, float]] = field(default_factory=lambda: {"sum": {}, "update": {}})
    phase_seconds: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    started: float = 0.0
    finished: float | None = None
    max_error: float | None = None
    verdict: str = "running"
    accuracy: float | None = None  # of the global model on a test set (learning tasks only)


class Recorder:
    """Thread-safe: SDK hooks run on the event loop and in worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rounds: dict[bytes, RoundRecord] = {}

    def round(self, seed: bytes) -> RoundRecord:
        with self._lock:
            return self.rounds.setdefault(seed, RoundRecord(seed))

    def selected(self, seed: bytes, task: str) -> None:
        record = self.round(seed)
        with self._lock:
            record.selected[task] += 1

    def sent(self, seed: bytes, index: int, task: str, result: str, size: int) -> None:
        record = self.round(seed)
        with self._lock:
            record.bytes_sent += size
            if task == "update" and result == "accepted":
                record.accepted_updates.add(index)

    def worked(self, seed: bytes, index: int, task: str, seconds: float) -> None:
        record = self.round(seed)
        with self._lock:
            per_participant = record.sdk_seconds[task]
            per_participant[index] = per_participant.get(index, 0.0) + seconds


def check_model(model: GlobalModel, record: RoundRecord, length: int) -> float:
    """Largest |global − mean| over the weights; raises if no update is known to be in it."""
    if not record.accepted_updates:
        raise ValueError("no participant was told its update was accepted")
    expected = np.mean(
        [local_model(i, record.seed, length).astype(np.float64) for i in sorted(record.accepted_updates)],
        axis=0,
    )
    published = model.numerators.astype(np.float64) / model.denominators.astype(np.float64)
    return float(np.max(np.abs(published - expected)))
