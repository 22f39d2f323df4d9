"""Sum, Update and Sum2 payloads (WIRE.md §4), parsed strictly and serialised exactly.

Strict means exact sizes: no trailing bytes after a Sum payload, a Sum2 mask or an Update
seed dictionary (the original ignores them; no conforming client sends any).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from xaynet.core.errors import DuplicateKeyError, LengthError
from xaynet.core.mask.object import MaskObject
from xaynet.core.message.header import Tag

SIGNATURE_LENGTH = 64
SUM_PAYLOAD_LENGTH = 96
SEED_DICT_ENTRY = 112  # sum participant pk (32) ‖ sealed mask seed (80)


@dataclass(frozen=True)
class SumPayload:
    sum_signature: bytes
    ephm_pk: bytes

    tag = Tag.SUM

    def to_bytes(self) -> bytes:
        return self.sum_signature + self.ephm_pk

    @classmethod
    def parse(cls, buf: bytes | memoryview) -> SumPayload:
        if len(buf) != SUM_PAYLOAD_LENGTH:
            raise LengthError(f"a sum payload has {SUM_PAYLOAD_LENGTH} bytes, got {len(buf)}")
        return cls(bytes(buf[:64]), bytes(buf[64:96]))


@dataclass(frozen=True)
class UpdatePayload:
    sum_signature: bytes
    update_signature: bytes
    masked_model: MaskObject
    local_seed_dict: dict[bytes, bytes]
    # the masked model as received: a view into the message (no copy of a whole model per
    # update); copied only by a coordinator that stores the models (a durable store)
    masked_model_bytes: bytes | memoryview = field(default=b"", compare=False, repr=False)

    tag = Tag.UPDATE

    def to_bytes(self) -> bytes:
        entries = b"".join(pk + seed for pk, seed in self.local_seed_dict.items())
        return b"".join(
            (
                self.sum_signature,
                self.update_signature,
                self.masked_model.to_bytes(),
                struct.pack(">I", 4 + len(entries)),
                entries,
            )
        )

    @classmethod
    def parse(cls, buf: bytes | memoryview) -> UpdatePayload:
        if len(buf) < 2 * SIGNATURE_LENGTH:
            raise LengthError("an update payload starts with two 64-byte signatures")
        masked_model, pos = MaskObject.parse(buf, 2 * SIGNATURE_LENGTH)
        if pos + 4 > len(buf):
            raise LengthError("the update payload ends before its seed dictionary")
        (dict_length,) = struct.unpack_from(">I", buf, pos)
        if dict_length < 4 or pos + dict_length != len(buf):
            raise LengthError(
                f"the seed dictionary says {dict_length} bytes, {len(buf) - pos} remain in the payload"
            )
        if (dict_length - 4) % SEED_DICT_ENTRY:
            raise LengthError(f"seed dictionary entries have {SEED_DICT_ENTRY} bytes each")
        seeds: dict[bytes, bytes] = {}
        for start in range(pos + 4, len(buf), SEED_DICT_ENTRY):
            key = bytes(buf[start : start + 32])
            if key in seeds:
                raise DuplicateKeyError(f"the seed dictionary lists sum participant {key.hex()} twice")
            seeds[key] = bytes(buf[start + 32 : start + SEED_DICT_ENTRY])
        raw_model = memoryview(buf)[2 * SIGNATURE_LENGTH : pos]
        return cls(bytes(buf[:64]), bytes(buf[64:128]), masked_model, seeds, raw_model)


@dataclass(frozen=True)
class Sum2Payload:
    sum_signature: bytes
    model_mask: MaskObject

    tag = Tag.SUM2

    def to_bytes(self) -> bytes:
        return self.sum_signature + self.model_mask.to_bytes()

    @classmethod
    def parse(cls, buf: bytes | memoryview) -> Sum2Payload:
        if len(buf) < SIGNATURE_LENGTH:
            raise LengthError("a sum2 payload starts with a 64-byte signature")
        mask, pos = MaskObject.parse(buf, SIGNATURE_LENGTH)
        if pos != len(buf):
            raise LengthError(f"{len(buf) - pos} unexpected bytes after the sum2 mask")
        return cls(bytes(buf[:64]), mask)


Payload = SumPayload | UpdatePayload | Sum2Payload

_PARSERS: dict[Tag, type[SumPayload] | type[UpdatePayload] | type[Sum2Payload]] = {
    Tag.SUM: SumPayload,
    Tag.UPDATE: UpdatePayload,
    Tag.SUM2: Sum2Payload,
}


def parse_payload(tag: Tag, buf: bytes | memoryview) -> Payload:
    return _PARSERS[tag].parse(buf)
