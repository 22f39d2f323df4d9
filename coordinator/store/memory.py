"""The embedded store: plain dictionaries, gone with the process.

Single process, so the lease is trivial, but it runs the same code path as Redis: the
lease has a TTL and a token, and every mutation checks the fence first.
"""

from __future__ import annotations

import time
from typing import Any

from xaynet.coordinator.store.base import (
    AggregateSnapshot,
    ArchiveItem,
    LeaseLostError,
    MaskOutcome,
    RoundRecord,
    StoredModel,
    UpdateOutcome,
)
from xaynet.core.message.assembler import ChunkAssembler, ChunkGroup, ChunkLimits, ChunkPut
from xaynet.core.message.chunks import ChunkPayload


class MemoryStore:
    """In-process state. Each method runs without awaiting, so each is atomic on the loop."""

    kind = "memory"

    def __init__(self) -> None:
        self.fence = ""
        self._lease: tuple[str, float] | None = None  # fence value, monotonic expiry
        self._lease_token = 0
        self._tenure: tuple[int, str] = (0, "")  # first token of the current holder's tenure
        self._chunks = ChunkAssembler(max_message_bytes=1)
        self._round: RoundRecord | None = None
        self._model: StoredModel | None = None
        self._totals: dict[str, int] = {}
        self._archive: dict[str, ArchiveItem] = {}  # S3 uploads pending (never wiped)
        self._last_archived: dict[str, Any] | None = None
        self._counted_round = -1
        self.clear_round_data_now()

    def clear_round_data_now(self) -> None:
        self._sum_dict: dict[bytes, bytes] = {}
        self._seeds: dict[bytes, dict[bytes, bytes]] = {}
        self._updaters: set[bytes] = set()
        self._unfolded: dict[bytes, bytes] = {}
        self._snapshot: AggregateSnapshot | None = None
        self._masks: dict[bytes, int] = {}
        self._mask_senders: set[bytes] = set()
        self._digests: dict[bytes, bytes] = {}
        if hasattr(self, "_chunks"):
            self._chunks.clear()

    def _fenced(self) -> None:
        now = time.monotonic()
        if self._lease is None or self._lease[1] <= now or self._lease[0] != self.fence:
            raise LeaseLostError("this coordinator does not hold the round's lease")

    # -- lease ---------------------------------------------------------------------------------
    async def acquire_lease(self, holder: str, ttl_ms: int) -> int:
        lease = self._lease
        if lease is not None and lease[1] > time.monotonic():
            return 0
        self._lease_token += 1
        if self._tenure[1] != holder:
            self._tenure = (self._lease_token, holder)
        self._lease = (f"{self._lease_token}|{holder}", time.monotonic() + ttl_ms / 1000)
        return self._lease_token

    async def renew_lease(self, fence: str, holder: str, ttl_ms: int) -> tuple[int, int]:
        if self._lease is not None and self._lease[1] > time.monotonic():
            value = self._lease[0]
            if value != fence and not value.endswith(f"|{holder}"):
                return 0, 0
            self._lease = (value, time.monotonic() + ttl_ms / 1000)
            return int(value.split("|", 1)[0]), self._tenure[0]
        token = await self.acquire_lease(holder, ttl_ms)
        return token, self._tenure[0]

    async def release_lease(self, fence: str) -> None:
        if self._lease is not None and self._lease[0] == fence:
            self._lease = None

    async def lease_holder(self) -> tuple[str, int] | None:
        if self._lease is None or self._lease[1] <= time.monotonic():
            return None
        token, _, holder = self._lease[0].partition("|")
        return holder, int(token)

    # -- multipart chunks ----------------------------------------------------------------------
    async def put_chunk(
        self, group: ChunkGroup, chunk: ChunkPayload, limits: ChunkLimits, now: float
    ) -> ChunkPut:
        self._fenced()
        self._chunks.use(limits)
        return self._chunks.put(group, chunk, now)

    async def release_chunks(self, group: ChunkGroup, accepted: bool) -> None:
        self._fenced()
        self._chunks.release(group, accepted)

    async def chunk_usage(self) -> tuple[int, int]:
        return len(self._chunks), self._chunks.buffered_bytes

    async def accepted_digest(self, pk: bytes) -> bytes | None:
        return self._digests.get(pk)

    async def chunked_message_accepted(self, group: ChunkGroup, last_chunk: bytes) -> bool:
        return self._chunks.accepted(group, last_chunk)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def load_round(self) -> RoundRecord | None:
        return self._round

    async def save_round(self, record: RoundRecord) -> None:
        self._fenced()
        self._round = record

    async def clear_round_data(self) -> None:
        self._fenced()
        self.clear_round_data_now()

    async def wipe(self) -> None:
        self._fenced()
        self._round = None
        self._model = None
        self._totals = {}
        self._counted_round = -1
        self.clear_round_data_now()

    async def add_sum_participant(self, pk: bytes, ephm_pk: bytes, digest: bytes = b"") -> bool:
        self._fenced()
        if pk in self._sum_dict:
            return False
        self._sum_dict[pk] = ephm_pk
        if digest:
            self._digests[pk] = digest
        return True

    async def sum_dict(self) -> dict[bytes, bytes]:
        return dict(self._sum_dict)

    async def add_update(
        self, pk: bytes, local_seed_dict: dict[bytes, bytes], masked_model: bytes, digest: bytes = b""
    ) -> UpdateOutcome:
        self._fenced()
        if len(local_seed_dict) != len(self._sum_dict):
            return UpdateOutcome.LENGTH_MISMATCH
        if any(sum_pk not in self._sum_dict for sum_pk in local_seed_dict):
            return UpdateOutcome.UNKNOWN_SUM_PARTICIPANT
        if pk in self._updaters:
            return UpdateOutcome.DUPLICATE
        self._updaters.add(pk)
        if digest:
            self._digests[pk] = digest
        for sum_pk, seed in local_seed_dict.items():
            self._seeds.setdefault(sum_pk, {})[pk] = seed
        # The in-memory store has nothing to resume from; keeping models would only cost RAM.
        return UpdateOutcome.ACCEPTED

    async def update_count(self) -> int:
        return len(self._updaters)

    async def update_participants(self) -> set[bytes]:
        return set(self._updaters)

    async def stored_model(self, pk: bytes) -> bytes | None:
        return self._unfolded.get(pk)

    async def seed_dict(self) -> dict[bytes, dict[bytes, bytes]]:
        return {sum_pk: dict(self._seeds.get(sum_pk, {})) for sum_pk in self._sum_dict}

    async def unfolded_models(self) -> dict[bytes, bytes]:
        return dict(self._unfolded)

    async def fold(self, snapshot: AggregateSnapshot, folded: list[bytes]) -> None:
        self._fenced()
        self._snapshot = snapshot
        for pk in folded:
            self._unfolded.pop(pk, None)

    async def aggregate_snapshot(self) -> AggregateSnapshot | None:
        return self._snapshot

    async def add_mask(self, pk: bytes, mask: bytes, digest: bytes = b"") -> MaskOutcome:
        self._fenced()
        if pk not in self._sum_dict:
            return MaskOutcome.UNKNOWN_SUM_PARTICIPANT
        if pk in self._mask_senders:
            return MaskOutcome.DUPLICATE
        self._mask_senders.add(pk)
        if digest:
            self._digests[pk] = digest
        self._masks[mask] = self._masks.get(mask, 0) + 1
        return MaskOutcome.ACCEPTED

    async def mask_senders(self) -> set[bytes]:
        return set(self._mask_senders)

    async def best_masks(self) -> list[tuple[bytes, int]]:
        return sorted(self._masks.items(), key=lambda item: item[1], reverse=True)[:2]

    async def unique_masks(self) -> int:
        return len(self._masks)

    async def save_model(self, model: StoredModel) -> None:
        self._fenced()
        self._model = model

    async def load_model(self) -> StoredModel | None:
        return self._model

    async def add_round_totals(self, round_id: int, totals: dict[str, int]) -> dict[str, int]:
        self._fenced()
        if round_id > self._counted_round:
            for name, value in totals.items():
                self._totals[name] = self._totals.get(name, 0) + value
            self._counted_round = round_id
        return dict(self._totals)

    async def round_totals(self) -> dict[str, int]:
        return dict(self._totals)

    async def durability(self) -> str | None:
        return None  # nothing outlives the process, as documented: no warning needed

    async def queue_archive(self, item: ArchiveItem) -> None:
        self._fenced()
        self._archive.setdefault(item.key, item)

    async def archive_queue(self) -> list[str]:
        return list(self._archive)  # in the order queued (a re-queued key keeps its place)

    async def queued_model(self, key: str) -> ArchiveItem | None:
        return self._archive.get(key)

    async def archive_done(self, key: str, record: dict[str, Any] | None = None) -> None:
        self._fenced()
        self._archive.pop(key, None)
        if record is not None:
            self._last_archived = dict(record)

    async def last_archived(self) -> dict[str, Any] | None:
        return self._last_archived
