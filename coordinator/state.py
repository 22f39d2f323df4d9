"""The coordinator's live round state, shared by the phase machine, the message pipeline and
the HTTP routes.

One `asyncio.Lock` serialises everything that changes the round: a message is accepted
under it, and a phase ends under it, so no message can slip into a phase that has already
read its dictionaries. `epoch` counts phase changes; a message checked against an older
epoch is refused ("phase ended") instead of landing in the wrong phase.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from xaynet.coordinator.store.base import Phase, RoundRecord, StoredModel
from xaynet.core.crypto import EncryptKeyPair
from xaynet.core.mask.aggregate import Aggregation

MESSAGE_PHASES = (Phase.SUM, Phase.UPDATE, Phase.SUM2)


class RoundFailedError(Exception):
    """The current round cannot complete; the machine starts a new one."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class PhaseCounters:
    accepted: int = 0
    rejected: int = 0
    discarded: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"accepted": self.accepted, "rejected": self.rejected, "discarded": self.discarded}


@dataclass(frozen=True)
class RoundView:
    """What a message is checked against: an immutable snapshot taken when it arrives."""

    epoch: int
    record: RoundRecord
    # The round before this one's key: a message sealed to it is a late one of a round that
    # ended (answered `rejected/round_ended`), not garbage (`invalid/decrypt`).
    previous_keys: EncryptKeyPair | None = None


@dataclass
class RoundState:
    record: RoundRecord
    epoch: int = 0
    phase_started_wall: float = field(default_factory=time.time)
    phase_started: float = field(default_factory=time.monotonic)
    counters: dict[Phase, PhaseCounters] = field(
        default_factory=lambda: {p: PhaseCounters() for p in MESSAGE_PHASES}
    )
    accepted_pks: set[bytes] = field(default_factory=set)
    sum_dict: dict[bytes, bytes] | None = None
    seed_dict: dict[bytes, dict[bytes, bytes]] | None = None
    aggregation: Aggregation | None = None
    unfolded: list[bytes] = field(default_factory=list)
    model: StoredModel | None = None
    phase_durations: dict[str, float] = field(default_factory=dict)
    last_round: dict[str, object] | None = None
    rounds_completed: int = 0
    rounds_failed: int = 0
    # what the phase saw of its participants (the failed-draw rule, `progress.py`)
    last_progress: float = field(default_factory=time.monotonic)
    input_fetches: int = 0
    params_fetches: int = 0
    last_failure: str | None = None
    params_body: bytes = b""
    previous_keys: EncryptKeyPair | None = None  # in memory only: a restart forgets it
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.params_body = self.record.params.to_bincode()

    @property
    def phase(self) -> Phase:
        return self.record.phase

    def view(self) -> RoundView:
        return RoundView(self.epoch, self.record, self.previous_keys)

    def enter(self, record: RoundRecord) -> None:
        """Switch to the record's phase (call with the lock held)."""
        now = time.monotonic()
        if record.round_id == self.record.round_id:
            self.phase_durations[self.record.phase.value] = round(now - self.phase_started, 3)
        else:
            self.phase_durations = {}
        if record.keys != self.record.keys:
            self.previous_keys = self.record.keys
        self.record = record
        self.params_body = record.params.to_bincode()
        self.epoch += 1
        self.phase_started = now
        self.phase_started_wall = time.time()
        self.last_progress = now
        self.input_fetches = 0
        self.params_fetches = 0
        if record.phase is Phase.SUM:  # a new round: every phase starts from zero
            self.counters = {p: PhaseCounters() for p in MESSAGE_PHASES}
        if record.phase in MESSAGE_PHASES:
            self.counters[record.phase] = PhaseCounters()
            self.accepted_pks = set()
        self.changed.set()

    def accepted(self, phase: Phase) -> int:
        return self.counters[phase].accepted if phase in self.counters else 0

    def note_accepted(self, phase: Phase, pk: bytes) -> None:
        self.counters[phase].accepted += 1
        self.accepted_pks.add(pk)
        self.last_progress = time.monotonic()
        self.changed.set()

    def note_params_fetch(self) -> None:
        """Someone asked for this round; the first ask starts the failed-draw rule's clock."""
        if self.params_fetches == 0:
            self.last_progress = time.monotonic()
        self.params_fetches += 1

    def note_input_fetch(self) -> None:
        """A participant fetched what the current phase needs (`/sums` in Update): it is busy."""
        self.input_fetches += 1
        self.last_progress = time.monotonic()
        self.changed.set()

    def round_counts(self) -> dict[str, int]:
        """Accepted messages of this round per phase (what `add_round_totals` adds up)."""
        return {f"accepted_{phase.value}": self.accepted(phase) for phase in MESSAGE_PHASES}
