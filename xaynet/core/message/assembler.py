"""Reassembly of multipart messages under one global byte budget, oldest group evicted first.

The original buffers chunk groups forever (WIRE.md §4.5), so a client that never sends its
last chunk leaks memory, and a cap on open messages turns into a denial of service: self-made
keys pass every check a chunk can have, so per-sender budgets do not help. Here all senders
share one byte budget (and a cap on open groups); a chunk that does not fit evicts the group
that was extended least recently among those holding a single chunk, and only when there are
none the least recently extended of all. A flood of first chunks (what self-made keys cost an
attacker least) thus evicts itself, even when it arrives between two chunks of a genuine
message: a participant whose message has two chunks here completes. Only a chunk whose own message
could not fit even in an empty buffer is refused for capacity (`FULL`, a retryable answer).

A complete group is *not* dropped on completion: its owner releases it once the message's
outcome is final (`release`), so a store failure or a crash while the message is processed
leaves the chunks for the client's retry of the last chunk. A group must be exactly ids
0..last with LAST on the highest id (every observed client obeys this). Time is passed in,
so this stays pure; the same rules run as a Lua script in the Redis store.
"""

from __future__ import annotations

import enum
import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field

from xaynet.core.errors import MultipartError
from xaynet.core.message.chunks import ChunkPayload
from xaynet.core.message.header import Tag

# What one buffered chunk costs beyond its data, with headroom: measured ~69 B per 1-byte
# chunk in this assembler (the bytes object, its dict slot and key) and ~59 B per field of a
# Redis hash (tests/coordinator/test_budget.py; the Lua script charges the same). Charging
# it bounds memory by the budget even for 1-byte chunks, which would otherwise let a 1 MiB
# budget hold ~70 MiB (a chunk id is 16 bits: a message may have 65,536 chunks).
CHUNK_OVERHEAD = 128


@dataclass(frozen=True)
class ChunkGroup:
    """The chunks of one message: same tag, same participant, same message id."""

    tag: Tag
    participant_pk: bytes
    message_id: int
    # a dictionary key several times per chunk: hashed once, not per lookup
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.tag, self.participant_pk, self.message_id)))

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type[ChunkGroup], tuple[Tag, bytes, int]]:
        return (ChunkGroup, (self.tag, self.participant_pk, self.message_id))  # hash anew: salted per process

    @property
    def name(self) -> str:
        return f"{int(self.tag)}:{self.participant_pk.hex()}:{self.message_id}"


@dataclass(frozen=True)
class ChunkLimits:
    max_message_bytes: int
    max_total_bytes: int = 256 * 1024 * 1024
    max_groups: int = 10_000
    ttl_seconds: float = 600.0


class ChunkStatus(enum.StrEnum):
    BUFFERED = "buffered"  # kept; more chunks are needed
    COMPLETE = "complete"  # every chunk is here: `payload` is the whole message
    MISSING = "missing"  # the last chunk arrived but earlier ones are gone (evicted, lost)
    DONE = "done"  # this message was already accepted; its chunks were released
    CONFLICT = "conflict"  # cannot belong to a well-formed message
    TOO_LARGE = "too_large"  # the message exceeds the largest message of the round
    FULL = "full"  # the message cannot fit the budget even alone; retry later


@dataclass(frozen=True)
class ChunkPut:
    status: ChunkStatus
    payload: bytes = b""
    detail: str = ""
    evicted: int = 0


@dataclass
class _Group:
    started: float
    touched: float
    chunks: dict[int, bytes] = field(default_factory=dict)
    last_id: int | None = None
    size: int = 0  # the message's bytes so far (checked against the largest message)
    cost: int = 0  # what it is charged against the budget: data plus CHUNK_OVERHEAD per chunk


@dataclass(frozen=True)
class AssembledMessage:
    participant_pk: bytes
    coordinator_pk: bytes
    tag: Tag
    payload: bytes


@dataclass
class ChunkAssembler:
    """Chunk groups in memory (the memory store's engine; the Redis store mirrors it in Lua)."""

    max_message_bytes: int
    max_total_bytes: int = 256 * 1024 * 1024
    max_groups: int = 10_000
    ttl_seconds: float = 600.0
    _groups: OrderedDict[ChunkGroup, _Group] = field(default_factory=OrderedDict, init=False)
    _singles: OrderedDict[ChunkGroup, None] = field(default_factory=OrderedDict, init=False)  # 1 chunk
    _done: dict[ChunkGroup, bytes] = field(default_factory=dict, init=False)  # → last chunk's hash
    _total: int = field(default=0, init=False)

    @property
    def limits(self) -> ChunkLimits:
        return ChunkLimits(self.max_message_bytes, self.max_total_bytes, self.max_groups, self.ttl_seconds)

    def use(self, limits: ChunkLimits) -> None:
        self.max_message_bytes = limits.max_message_bytes
        self.max_total_bytes = limits.max_total_bytes
        self.max_groups = limits.max_groups
        self.ttl_seconds = limits.ttl_seconds

    @property
    def buffered_bytes(self) -> int:
        """What the open messages are charged: their data plus CHUNK_OVERHEAD per chunk."""
        return self._total

    def __len__(self) -> int:
        return len(self._groups)

    def put(self, group_key: ChunkGroup, chunk: ChunkPayload, now: float) -> ChunkPut:
        """Keep one verified chunk (evicting least recently extended groups to make room)."""
        done = self._done.get(group_key)
        if done is not None and chunk.last and chunk_digest(chunk.data) == done:
            self._drop(group_key)  # the earlier chunks of a whole re-send of that message
            return ChunkPut(ChunkStatus.DONE)
        group = self._groups.get(group_key)
        if group is not None:
            conflict = _conflict(group, chunk)
            if conflict:
                return ChunkPut(ChunkStatus.CONFLICT, detail=conflict)
            if chunk.chunk_id in group.chunks:  # an identical retry of a chunk we hold
                group.touched = now
                self._groups.move_to_end(group_key)
                if group_key in self._singles:
                    self._singles.move_to_end(group_key)
                return self._state(group, chunk)
        size = (group.size if group else 0) + len(chunk.data)
        if size > self.max_message_bytes:
            return ChunkPut(
                ChunkStatus.TOO_LARGE, detail=f"the multipart message exceeds {self.max_message_bytes} bytes"
            )
        charge = len(chunk.data) + CHUNK_OVERHEAD
        if (group.cost if group else 0) + charge > self.max_total_bytes:
            return ChunkPut(ChunkStatus.FULL, detail="the multipart buffer cannot hold this message now")
        evicted = self._make_room(group_key, charge, group is None, now)
        if group is None:
            group = _Group(now, now)
            self._groups[group_key] = group
        group.chunks[chunk.chunk_id] = chunk.data
        group.size += len(chunk.data)
        group.cost += charge
        group.touched = now
        self._groups.move_to_end(group_key)
        if len(group.chunks) == 1:
            self._singles[group_key] = None
            self._singles.move_to_end(group_key)
        else:
            self._singles.pop(group_key, None)
        self._total += charge
        if chunk.last:
            group.last_id = chunk.chunk_id
        state = self._state(group, chunk)
        return ChunkPut(state.status, state.payload, state.detail, evicted)

    def _make_room(self, keep: ChunkGroup, size: int, new_group: bool, now: float) -> int:
        stale = []
        for key, group in self._groups.items():  # least recently extended first
            if now - group.touched <= self.ttl_seconds:
                break  # the rest are fresher: a chunk costs O(1) here, not O(open messages)
            if key != keep:
                stale.append(key)
        for key in stale:
            self._drop(key)
        evicted = len(stale)
        full = new_group and len(self._groups) >= self.max_groups
        while self._total + size > self.max_total_bytes or full:
            oldest = next((k for k in self._singles if k != keep), None)
            if oldest is None:
                oldest = next((k for k in self._groups if k != keep), None)
            if oldest is None:  # pragma: no cover - excluded by the size check in `put`
                break
            self._drop(oldest)
            evicted += 1
            full = new_group and len(self._groups) >= self.max_groups
        return evicted

    @staticmethod
    def _state(group: _Group, chunk: ChunkPayload) -> ChunkPut:
        if group.last_id is None:
            return ChunkPut(ChunkStatus.BUFFERED)
        if len(group.chunks) == group.last_id + 1:
            return ChunkPut(ChunkStatus.COMPLETE, b"".join(group.chunks[i] for i in range(group.last_id + 1)))
        if chunk.last:
            missing = [i for i in range(group.last_id) if i not in group.chunks]
            return ChunkPut(ChunkStatus.MISSING, detail=f"chunks {missing[:8]} of this message are missing")
        return ChunkPut(ChunkStatus.BUFFERED)

    def _drop(self, key: ChunkGroup) -> None:
        group = self._groups.pop(key, None)
        self._singles.pop(key, None)
        if group is not None:
            self._total -= group.cost

    def accepted(self, group_key: ChunkGroup, last_chunk: bytes) -> bool:
        """Whether the message of `group_key` ending in `last_chunk` was released as accepted."""
        return self._done.get(group_key) == chunk_digest(last_chunk)

    def release(self, group_key: ChunkGroup, accepted: bool = False) -> None:
        """The message's outcome is final: drop its chunks (remember it if it was accepted).

        Remembered by the hash of its last chunk: only that chunk is answered `DONE` later; a
        different message that reuses the 16-bit message id is buffered and judged."""
        group = self._groups.get(group_key)
        if accepted and group is not None and group.last_id is not None:
            self._done[group_key] = chunk_digest(group.chunks[group.last_id])
        self._drop(group_key)

    def add(
        self, participant_pk: bytes, coordinator_pk: bytes, tag: Tag, chunk: ChunkPayload, now: float
    ) -> AssembledMessage | None:
        """Buffer a chunk; return the whole message (and drop its group) once complete.

        Raises `MultipartError` for a chunk that cannot belong to a well-formed message or
        does not fit; convenient where nothing can fail between completion and use.
        """
        key = ChunkGroup(tag, participant_pk, chunk.message_id)
        put = self.put(key, chunk, now)
        if put.status in (ChunkStatus.CONFLICT, ChunkStatus.TOO_LARGE, ChunkStatus.FULL):
            raise MultipartError(put.detail)
        if put.status is not ChunkStatus.COMPLETE:
            return None
        self.release(key)
        return AssembledMessage(participant_pk, coordinator_pk, tag, put.payload)

    def expire(self, now: float) -> int:
        """Drop groups not extended for longer than the TTL; return how many were dropped."""
        stale = [k for k, g in self._groups.items() if now - g.touched > self.ttl_seconds]
        for key in stale:
            self._drop(key)
        return len(stale)

    def clear(self) -> int:
        """Drop every partial message (the round ended); return how many."""
        dropped = len(self._groups)
        self._groups.clear()
        self._singles.clear()
        self._done.clear()
        self._total = 0
        return dropped


def chunk_digest(data: bytes) -> bytes:
    """How an accepted message's last chunk is remembered (the Lua script's `redis.sha1hex`)."""
    return hashlib.sha1(data, usedforsecurity=False).digest()


def _conflict(group: _Group, chunk: ChunkPayload) -> str:
    held = group.chunks.get(chunk.chunk_id)
    if held is not None and held != chunk.data:
        return f"chunk {chunk.chunk_id} arrived twice with different data"
    if group.last_id is not None and chunk.chunk_id > group.last_id:
        return f"chunk {chunk.chunk_id} comes after the last chunk {group.last_id}"
    if chunk.last and group.chunks and chunk.chunk_id < max(group.chunks):
        return f"chunk {chunk.chunk_id} is marked last but a higher id exists"
    if chunk.last and group.last_id is not None and group.last_id != chunk.chunk_id:
        return "two different chunks are marked last"
    return ""
