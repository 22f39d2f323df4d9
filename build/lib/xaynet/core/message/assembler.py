"""Reassembly of multipart messages, with limits and expiry.

The original buffers chunk groups forever (WIRE.md §4.5), so a client that never sends its
last chunk leaks memory. Here every group has a deadline, the total buffered bytes and the
number of open groups are capped, and a group must be exactly ids 0..last with LAST on the
highest id (every observed client obeys this). Time is passed in, so this stays pure and
testable; the coordinator calls `expire` on its clock and `clear` when a phase ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xaynet.core.errors import MultipartError
from xaynet.core.message.chunks import ChunkPayload
from xaynet.core.message.header import Tag


@dataclass
class _Group:
    tag: Tag
    coordinator_pk: bytes
    started: float
    chunks: dict[int, bytes] = field(default_factory=dict)
    last_id: int | None = None
    size: int = 0


@dataclass(frozen=True)
class AssembledMessage:
    participant_pk: bytes
    coordinator_pk: bytes
    tag: Tag
    payload: bytes


@dataclass
class ChunkAssembler:
    """Collects chunks per (participant pk, message id) until a group is complete."""

    max_message_bytes: int
    max_total_bytes: int = 256 * 1024 * 1024
    max_groups: int = 10_000
    ttl_seconds: float = 600.0
    _groups: dict[tuple[bytes, int], _Group] = field(default_factory=dict, init=False)
    _total: int = field(default=0, init=False)

    @property
    def buffered_bytes(self) -> int:
        return self._total

    def __len__(self) -> int:
        return len(self._groups)

    def add(
        self, participant_pk: bytes, coordinator_pk: bytes, tag: Tag, chunk: ChunkPayload, now: float
    ) -> AssembledMessage | None:
        """Buffer one verified chunk; return the whole message once it is complete.

        Raises `MultipartError` (and changes nothing) for a chunk that cannot belong to a
        well-formed message or would exceed a limit.
        """
        key = (participant_pk, chunk.message_id)
        group = self._groups.get(key)
        if group is None:
            if len(self._groups) >= self.max_groups:
                raise MultipartError("too many multipart messages are being assembled; retry later")
            group = _Group(tag, coordinator_pk, now)
        elif group.tag != tag or group.coordinator_pk != coordinator_pk:
            raise MultipartError("a chunk's tag or round key differs from the rest of its message")
        self._check(group, chunk)
        if chunk.chunk_id in group.chunks:
            return None  # an identical retry of a chunk we hold
        if group.size + len(chunk.data) > self.max_message_bytes:
            raise MultipartError(f"the multipart message exceeds {self.max_message_bytes} bytes")
        if self._total + len(chunk.data) > self.max_total_bytes:
            raise MultipartError("the multipart buffer is full; retry later")
        group.chunks[chunk.chunk_id] = chunk.data
        group.size += len(chunk.data)
        self._total += len(chunk.data)
        if chunk.last:
            group.last_id = chunk.chunk_id
        self._groups[key] = group
        if group.last_id is not None and len(group.chunks) == group.last_id + 1:
            del self._groups[key]
            self._total -= group.size
            payload = b"".join(group.chunks[i] for i in range(group.last_id + 1))
            return AssembledMessage(participant_pk, coordinator_pk, tag, payload)
        return None

    @staticmethod
    def _check(group: _Group, chunk: ChunkPayload) -> None:
        held = group.chunks.get(chunk.chunk_id)
        if held is not None and held != chunk.data:
            raise MultipartError(f"chunk {chunk.chunk_id} arrived twice with different data")
        if group.last_id is not None and chunk.chunk_id > group.last_id:
            raise MultipartError(f"chunk {chunk.chunk_id} comes after the last chunk {group.last_id}")
        if chunk.last and group.chunks and chunk.chunk_id < max(group.chunks):
            raise MultipartError(f"chunk {chunk.chunk_id} is marked last but a higher id exists")
        if chunk.last and group.last_id is not None and group.last_id != chunk.chunk_id:
            raise MultipartError("two different chunks are marked last")

    def expire(self, now: float) -> int:
        """Drop groups older than the TTL; return how many were dropped."""
        stale = [k for k, g in self._groups.items() if now - g.started > self.ttl_seconds]
        for key in stale:
            self._total -= self._groups.pop(key).size
        return len(stale)

    def clear(self) -> int:
        """Drop every partial message (a phase or round ended); return how many."""
        dropped = len(self._groups)
        self._groups.clear()
        self._total = 0
        return dropped
