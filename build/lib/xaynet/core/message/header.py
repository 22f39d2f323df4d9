"""The 136-byte message header (WIRE.md §3.2).

signature (64) ‖ participant pk (32) ‖ coordinator pk (32) ‖ length u32 BE ‖ tag ‖ flags ‖
2 reserved bytes. The signature covers bytes [64, length). We are stricter than the
original where that rejects nothing a conforming client sends: the length field must equal
the plaintext's length, unknown flag bits and non-zero reserved bytes are refused.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from xaynet.core.errors import DecodeError, LengthError, UnknownTagError

HEADER_LENGTH = 136
FLAG_MULTIPART = 0x01
_SIGNED_FROM = 64


class Tag(enum.IntEnum):
    """Which PET message a payload is (chunks carry the tag of the message they belong to)."""

    SUM = 1
    UPDATE = 2
    SUM2 = 3


@dataclass(frozen=True)
class Header:
    signature: bytes
    participant_pk: bytes
    coordinator_pk: bytes
    length: int
    tag: Tag
    multipart: bool

    @classmethod
    def parse(cls, plain: bytes | memoryview) -> Header:
        if len(plain) < HEADER_LENGTH:
            raise LengthError(f"a message has at least {HEADER_LENGTH} bytes, got {len(plain)}")
        (length,) = struct.unpack_from(">I", plain, 128)
        if length != len(plain):
            raise LengthError(f"the header says {length} bytes, the message has {len(plain)}")
        tag_byte, flags = plain[132], plain[133]
        try:
            tag = Tag(tag_byte)
        except ValueError:
            raise UnknownTagError(f"unknown message tag {tag_byte} (expected 1, 2 or 3)") from None
        if flags & ~FLAG_MULTIPART:
            raise DecodeError(f"unknown header flags {flags:#04x}")
        if plain[134] or plain[135]:
            raise DecodeError("the reserved header bytes must be zero")
        return cls(
            signature=bytes(plain[0:64]),
            participant_pk=bytes(plain[64:96]),
            coordinator_pk=bytes(plain[96:128]),
            length=length,
            tag=tag,
            multipart=bool(flags & FLAG_MULTIPART),
        )


def unsigned_message(
    participant_pk: bytes, coordinator_pk: bytes, tag: Tag, multipart: bool, payload: bytes
) -> bytearray:
    """Header (with a zero signature) and payload; sign `[64:]` and write the signature at [0:64]."""
    if len(participant_pk) != 32 or len(coordinator_pk) != 32:
        raise LengthError("participant and coordinator public keys have 32 bytes each")
    length = HEADER_LENGTH + len(payload)
    buf = bytearray(length)
    buf[64:96] = participant_pk
    buf[96:128] = coordinator_pk
    struct.pack_into(">IBBH", buf, 128, length, int(tag), FLAG_MULTIPART if multipart else 0, 0)
    buf[HEADER_LENGTH:] = payload
    return buf


def signed_part(plain: bytes | bytearray | memoryview) -> memoryview:
    return memoryview(plain)[_SIGNED_FROM:]
