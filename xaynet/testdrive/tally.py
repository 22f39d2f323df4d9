"""One driver's running account of one round, and the exact check of its global model.

A driver does not keep the models its participants sent: when the coordinator answers that an
update was accepted, the sender's scalar-weighted model is added into a float64 running sum
(memory O(model length) per round, whatever the number of participants). The parent adds the
drivers' tallies and compares the published model with Σ sᵢwᵢ / Σ sᵢ. float32 weights are
exact in float64; summing n of them loses at most n·2⁻⁵³·max|sᵢwᵢ| per weight (≈ 1e-12 for
n = 10,000 weights in [-1, 1]), far below the encoding's 1e-10 step the tolerance is built on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from xaynet.core.mask.model import GlobalModel


@dataclass
class RoundTally:
    seed: bytes
    selected: dict[str, int] = field(default_factory=lambda: {"sum": 0, "update": 0})
    bytes_sent: int = 0
    sdk_update_seconds: dict[int, float] = field(default_factory=dict)  # per updater: mask + seal
    accepted: set[int] = field(default_factory=set)  # updaters told "accepted"
    dropped: dict[str, int] = field(default_factory=lambda: {"update": 0, "sum2": 0})
    # Final answers other than "accepted", per task and "result/reason" (e.g. update:
    # "discarded/phase_full"): why a selected participant did not count.
    refused: dict[str, dict[str, int]] = field(default_factory=dict)
    weighted_sum: npt.NDArray[np.float64] | None = None
    scalar_sum: float = 0.0

    def add(self, index: int, weights: Any, scalar: float) -> None:
        """An accepted update: idempotent (a re-sent message is accepted again)."""
        if index in self.accepted:
            return
        self.accepted.add(index)
        vector = np.asarray(weights, dtype=np.float64)
        if scalar != 1.0:
            vector = vector * scalar
        if self.weighted_sum is None:
            self.weighted_sum = vector.copy()
        else:
            self.weighted_sum += vector
        self.scalar_sum += scalar

    def refuse(self, task: str, result: str, reason: str) -> None:
        """A message of `task` got a final answer other than accepted."""
        key = f"{result}/{reason}" if reason else result
        by_answer = self.refused.setdefault(task, {})
        by_answer[key] = by_answer.get(key, 0) + 1

    @classmethod
    def combine(cls, seed: bytes, tallies: list[RoundTally]) -> RoundTally:
        """The round as all drivers saw it (their participants are disjoint)."""
        total = cls(seed)
        for tally in tallies:
            for task, count in tally.selected.items():
                total.selected[task] = total.selected.get(task, 0) + count
            for task, count in tally.dropped.items():
                total.dropped[task] = total.dropped.get(task, 0) + count
            for task, answers in tally.refused.items():
                for key, count in answers.items():
                    by_answer = total.refused.setdefault(task, {})
                    by_answer[key] = by_answer.get(key, 0) + count
            total.bytes_sent += tally.bytes_sent
            total.sdk_update_seconds.update(tally.sdk_update_seconds)
            total.accepted |= tally.accepted
            total.scalar_sum += tally.scalar_sum
            if tally.weighted_sum is not None:
                if total.weighted_sum is None:
                    total.weighted_sum = tally.weighted_sum.copy()
                else:
                    total.weighted_sum += tally.weighted_sum
        return total

    def expected(self) -> npt.NDArray[np.float64]:
        """Σ sᵢwᵢ / Σ sᵢ over the accepted updates; ValueError when none is known."""
        if self.weighted_sum is None or not self.accepted or self.scalar_sum <= 0:
            raise ValueError("no participant was told its update was accepted")
        return self.weighted_sum / self.scalar_sum


def distance(model: GlobalModel, expected: npt.NDArray[np.float64]) -> float:
    """Largest |published − expected| over the weights."""
    published = model.numerators.astype(np.float64) / model.denominators.astype(np.float64)
    if published.shape != expected.shape:
        raise ValueError(f"the global model has {published.size} weights, the updates had {expected.size}")
    return float(np.max(np.abs(published - expected)))
