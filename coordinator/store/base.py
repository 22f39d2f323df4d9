"""What the coordinator keeps between messages, behind one interface.

Two implementations: `MemoryStore` (the embedded default; state dies with the process) and
`RedisStore` (survives restarts; several coordinators can share one Redis because every key
is namespaced per instance). Each write that accepts a message is atomic, and it is checked
before it writes: a refused message leaves nothing behind.

Unlike the original, the store also keeps what is needed to *resume* an interrupted round:
the phase, and every accepted masked model until it has been folded into a stored aggregate.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from xaynet.core.bincode import RoundParameters
from xaynet.core.crypto import EncryptKeyPair


class StoreUnavailableError(Exception):
    """The store cannot be reached or failed; the request may be retried later."""


class Phase(enum.StrEnum):
    IDLE = "idle"
    SUM = "sum"
    UPDATE = "update"
    SUM2 = "sum2"
    UNMASK = "unmask"
    ERROR = "error"
    SHUTDOWN = "shutdown"


class UpdateOutcome(enum.Enum):
    ACCEPTED = "accepted"
    LENGTH_MISMATCH = "seed_dict_length_mismatch"
    UNKNOWN_SUM_PARTICIPANT = "unknown_sum_participant"
    DUPLICATE = "duplicate_update"


class MaskOutcome(enum.Enum):
    ACCEPTED = "accepted"
    UNKNOWN_SUM_PARTICIPANT = "unknown_sum_participant"
    DUPLICATE = "duplicate_sum2"


@dataclass(frozen=True)
class RoundRecord:
    """The durable part of the round state: enough to resume it after a crash."""

    round_id: int
    keys: EncryptKeyPair
    params: RoundParameters
    phase: Phase

    def with_phase(self, phase: Phase) -> RoundRecord:
        return RoundRecord(self.round_id, self.keys, self.params, phase)


@dataclass(frozen=True)
class StoredModel:
    round_id: int
    body: bytes  # bincode `Model`, the `/model` body
    checksum: str


@dataclass(frozen=True)
class AggregateSnapshot:
    """A folded running sum: `body` is a MaskObject's bytes, summing `nb_models` updates."""

    nb_models: int
    body: bytes


class Store(Protocol):
    kind: str

    async def ping(self) -> None: ...
    async def close(self) -> None: ...

    # round bookkeeping
    async def load_round(self) -> RoundRecord | None: ...
    async def save_round(self, record: RoundRecord) -> None: ...
    async def clear_round_data(self) -> None: ...
    async def wipe(self) -> None: ...

    # sum
    async def add_sum_participant(self, pk: bytes, ephm_pk: bytes) -> bool: ...
    async def sum_dict(self) -> dict[bytes, bytes]: ...

    # update
    async def add_update(
        self, pk: bytes, local_seed_dict: dict[bytes, bytes], masked_model: bytes
    ) -> UpdateOutcome: ...
    async def update_count(self) -> int: ...
    async def update_participants(self) -> set[bytes]: ...
    async def stored_model(self, pk: bytes) -> bytes | None: ...
    async def seed_dict(self) -> dict[bytes, dict[bytes, bytes]]: ...
    async def unfolded_models(self) -> dict[bytes, bytes]: ...
    async def fold(self, snapshot: AggregateSnapshot, folded: list[bytes]) -> None: ...
    async def aggregate_snapshot(self) -> AggregateSnapshot | None: ...

    # sum2
    async def add_mask(self, pk: bytes, mask: bytes) -> MaskOutcome: ...
    async def mask_senders(self) -> set[bytes]: ...
    async def best_masks(self) -> list[tuple[bytes, int]]: ...
    async def unique_masks(self) -> int: ...

    # global model
    async def save_model(self, model: StoredModel) -> None: ...
    async def load_model(self) -> StoredModel | None: ...
