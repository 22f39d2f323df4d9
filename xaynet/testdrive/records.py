"""What test-drive reports per round.

Participants are identified by index; participant i's random model in a round is drawn from
a generator seeded by (i, round seed). The drivers' tallies (`tally.py`) give what each round
aggregated; the parent fills one `RoundRecord` per round from them and the coordinator's
`/status`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from xaynet.testdrive.tally import RoundTally

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
    accepted_updates: int = 0  # updaters told "accepted", over all drivers
    dropped: dict[str, int] = field(default_factory=dict)  # work stopped because its phase ended
    refused: dict[str, dict[str, int]] = field(default_factory=dict)  # task → "result/reason" → n
    bytes_sent: int = 0
    sdk_seconds: dict[str, dict[int, float]] = field(default_factory=lambda: {"sum": {}, "update": {}})
    phase_seconds: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    started: float = 0.0
    finished: float | None = None
    max_error: float | None = None
    tolerance: float | None = None
    verdict: str = "running"
    accuracy: float | None = None  # of the global model on a test set (learning tasks only)

    def take(self, tally: RoundTally) -> None:
        """What the drivers saw of this round."""
        self.selected = dict(tally.selected)
        self.accepted_updates = len(tally.accepted)
        self.dropped = dict(tally.dropped)
        self.refused = {task: dict(answers) for task, answers in tally.refused.items()}
        self.bytes_sent = tally.bytes_sent
        self.sdk_seconds["update"] = dict(tally.sdk_update_seconds)
