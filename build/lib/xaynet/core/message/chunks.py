"""Multipart messages: the 8-byte chunk header and how clients split payloads (WIRE.md §4.5).

A payload too large for the client's maximum message size is cut into slices of
`Mmax - 192` bytes; each slice travels in its own signed and sealed message with the
MULTIPART flag and the original tag.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass

from xaynet.core.crypto import SEAL_OVERHEAD
from xaynet.core.errors import DecodeError, LengthError
from xaynet.core.message.header import HEADER_LENGTH

CHUNK_HEADER_LENGTH = 8
FLAG_LAST_CHUNK = 0x01
DEFAULT_MAX_MESSAGE_SIZE = 4096 - HEADER_LENGTH - SEAL_OVERHEAD  # 3912, the Rust SDK default
MIN_MAX_MESSAGE_SIZE = HEADER_LENGTH + SEAL_OVERHEAD + CHUNK_HEADER_LENGTH + 2  # 194


@dataclass(frozen=True)
class ChunkPayload:
    chunk_id: int
    message_id: int
    last: bool
    data: bytes

    def to_bytes(self) -> bytes:
        flags = FLAG_LAST_CHUNK if self.last else 0
        return struct.pack(">HHB3x", self.chunk_id, self.message_id, flags) + self.data

    @classmethod
    def parse(cls, buf: bytes | memoryview) -> ChunkPayload:
        if len(buf) < CHUNK_HEADER_LENGTH:
            raise LengthError(f"a chunk payload has at least {CHUNK_HEADER_LENGTH} bytes")
        chunk_id, message_id, flags = struct.unpack_from(">HHB", buf)
        if flags & ~FLAG_LAST_CHUNK:
            raise DecodeError(f"unknown chunk flags {flags:#04x}")
        if buf[5] or buf[6] or buf[7]:
            raise DecodeError("the reserved chunk header bytes must be zero")
        return cls(chunk_id, message_id, bool(flags & FLAG_LAST_CHUNK), bytes(buf[CHUNK_HEADER_LENGTH:]))


def split_payload(
    payload: bytes, max_message_size: int | None, message_id: int | None = None
) -> list[ChunkPayload] | None:
    """The chunks a client sends for `payload`, or None when it fits one message.

    `max_message_size` is the largest sealed POST body; None means unlimited (the wheel).
    """
    if max_message_size is None:
        return None
    if max_message_size < MIN_MAX_MESSAGE_SIZE:
        raise LengthError(
            f"a maximum message size below {MIN_MAX_MESSAGE_SIZE} bytes leaves no room for chunk data"
        )
    max_payload = max_message_size - HEADER_LENGTH - SEAL_OVERHEAD
    if len(payload) <= max_payload:
        return None
    step = max_payload - CHUNK_HEADER_LENGTH
    count = (len(payload) + step - 1) // step
    if count > 1 << 16:
        raise LengthError(f"{count} chunks exceed the 65536 chunk ids of a multipart message")
    mid = secrets.randbelow(1 << 16) if message_id is None else message_id
    return [ChunkPayload(i, mid, i == count - 1, payload[i * step : (i + 1) * step]) for i in range(count)]
