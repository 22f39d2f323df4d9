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
from typing import Any, Protocol

from xaynet.core.bincode import RoundParameters
from xaynet.core.crypto import EncryptKeyPair
from xaynet.core.message.assembler import ChunkGroup, ChunkLimits, ChunkPut
from xaynet.core.message.chunks import ChunkPayload


class StoreUnavailableError(Exception):
    """The store cannot be reached or failed; the request may be retried later."""


class LeaseLostError(StoreUnavailableError):
    """This coordinator does not hold the round's lease (any more): it must not write.

    Raised by every store mutation whose fencing token is not the one in the store, so a
    coordinator that lost its lease (paused, partitioned, replaced) cannot change the round.
    """


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
class ArchiveItem:
    """A global model waiting for its upload to the S3 archive (coordinator/archive.py).

    Kept in the store until the upload is confirmed, so an S3 outage or a crash loses none;
    never touched by `wipe`/`clear_round_data` (it outlives rounds and fresh starts).
    """

    key: str  # the object key, `<round id>_<hex seed>`
    round_id: int
    body: bytes  # the `/model` bytes
    metadata: dict[str, str]  # S3 user metadata (xaynet.core.s3.ModelMetadata)


@dataclass(frozen=True)
class AggregateSnapshot:
    """A folded running sum: `body` is a MaskObject's bytes, summing `nb_models` updates."""

    nb_models: int
    body: bytes


class Store(Protocol):
    """Every mutation is fenced: it writes only while `fence` is the lease value in the store
    (else `LeaseLostError`), checked atomically with the write (Lua on Redis)."""

    kind: str
    fence: str

    # the round's lease (store/lease.py drives these)
    async def acquire_lease(self, holder: str, ttl_ms: int) -> int: ...
    async def renew_lease(self, fence: str, holder: str, ttl_ms: int) -> tuple[int, int]:
        """(token, first token of this holder's unbroken tenure); (0, 0): another holds it."""
        ...

    async def release_lease(self, fence: str) -> None: ...
    async def lease_holder(self) -> tuple[str, int] | None: ...

    # multipart chunks (kept with the round until the message's outcome is final)
    async def put_chunk(
        self, group: ChunkGroup, chunk: ChunkPayload, limits: ChunkLimits, now: float
    ) -> ChunkPut: ...
    async def release_chunks(self, group: ChunkGroup, accepted: bool) -> None: ...
    async def chunk_usage(self) -> tuple[int, int]: ...
    async def accepted_digest(self, pk: bytes) -> bytes | None: ...
    async def chunked_message_accepted(self, group: ChunkGroup, last_chunk: bytes) -> bool:
        """Whether the multipart message ending in `last_chunk` was accepted this round."""
        ...

    async def ping(self) -> None: ...
    async def close(self) -> None: ...

    # round bookkeeping
    async def load_round(self) -> RoundRecord | None: ...
    async def save_round(self, record: RoundRecord) -> None: ...
    async def clear_round_data(self) -> None: ...
    async def wipe(self) -> None: ...

    # sum
    async def add_sum_participant(self, pk: bytes, ephm_pk: bytes, digest: bytes = b"") -> bool: ...
    async def sum_dict(self) -> dict[bytes, bytes]: ...

    # update
    async def add_update(
        self, pk: bytes, local_seed_dict: dict[bytes, bytes], masked_model: bytes, digest: bytes = b""
    ) -> UpdateOutcome: ...
    async def update_count(self) -> int: ...
    async def update_participants(self) -> set[bytes]: ...
    async def stored_model(self, pk: bytes) -> bytes | None: ...
    async def seed_dict(self) -> dict[bytes, dict[bytes, bytes]]: ...
    async def unfolded_models(self) -> dict[bytes, bytes]: ...
    async def fold(self, snapshot: AggregateSnapshot, folded: list[bytes]) -> None: ...
    async def aggregate_snapshot(self) -> AggregateSnapshot | None: ...

    # sum2
    async def add_mask(self, pk: bytes, mask: bytes, digest: bytes = b"") -> MaskOutcome: ...
    async def mask_senders(self) -> set[bytes]: ...
    async def best_masks(self) -> list[tuple[bytes, int]]: ...
    async def unique_masks(self) -> int: ...

    # global model
    async def save_model(self, model: StoredModel) -> None: ...
    async def load_model(self) -> StoredModel | None: ...

    # totals over all rounds (rounds completed/failed, messages accepted), kept across restarts
    async def add_round_totals(self, round_id: int, totals: dict[str, int]) -> dict[str, int]:
        """Add one round's totals, once per round id (a repeat changes nothing); return all."""
        ...

    async def round_totals(self) -> dict[str, int]: ...

    async def durability(self) -> str | None:
        """Why an `accepted` write could be lost in a crash of the store's host, or None
        (durable enough, or unknown: e.g. a managed Redis that hides its CONFIG)."""
        ...

    # models waiting for the S3 archive, oldest round first (fenced writes; never wiped)
    async def queue_archive(self, item: ArchiveItem) -> None:
        """Keep `item` until `archive_done(item.key)`; queueing the same key again is a no-op."""
        ...

    async def archive_queue(self) -> list[str]:
        """The queued keys, oldest round first (cheap: no model bodies)."""
        ...

    async def queued_model(self, key: str) -> ArchiveItem | None: ...
    async def archive_done(self, key: str, record: dict[str, Any] | None = None) -> None:
        """Dequeue `key`; `record` (round, checksum, size of the upload) becomes `last_archived`."""
        ...

    async def last_archived(self) -> dict[str, Any] | None: ...
