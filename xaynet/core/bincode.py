"""The bincode bodies of the HTTP API (API.md §3-7): RoundParameters, SumDict, UpdateSeedDict.

bincode 1.x defaults: little-endian fixed-width integers, u64 length prefixes for byte
strings, sequences and maps. Fixed-size keys are byte strings (u64 32 ‖ 32 bytes). Readers
ignore trailing bytes, as the original clients do; everything else is checked. The model
body lives with the rationals it encodes, in `xaynet.core.mask.model`.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from xaynet.core.errors import DecodeError, DuplicateKeyError, LengthError
from xaynet.core.mask.config import MaskConfig, MaskConfigPair

ROUND_PARAMETERS_LENGTH = 136
ENCRYPTED_SEED_LENGTH = 80

_KEY_PREFIX = struct.pack("<Q", 32)
_SEED_PREFIX = struct.pack("<Q", ENCRYPTED_SEED_LENGTH)


def _check_prefix(view: memoryview, pos: int, expected: int, what: str) -> None:
    (found,) = struct.unpack_from("<Q", view, pos)
    if found != expected:
        raise DecodeError(f"{what} must be {expected} bytes long, the body says {found}")


@dataclass(frozen=True)
class RoundParameters:
    """What `GET /params` says: the round's key, probabilities, seed, masking and model size."""

    pk: bytes
    sum: float
    update: float
    seed: bytes
    mask_config: MaskConfigPair
    model_length: int

    def __post_init__(self) -> None:
        if len(self.pk) != 32 or len(self.seed) != 32:
            raise LengthError("the round public key and seed have 32 bytes each")
        if math.isnan(self.sum) or math.isnan(self.update):
            raise DecodeError("selection probabilities must not be NaN")
        if not 0 <= self.model_length < 2**64:
            raise DecodeError(f"model length {self.model_length} out of range")

    def to_bincode(self) -> bytes:
        return b"".join(
            (
                _KEY_PREFIX,
                self.pk,
                struct.pack("<dd", self.sum, self.update),
                _KEY_PREFIX,
                self.seed,
                self.mask_config.vect.to_bincode(),
                self.mask_config.unit.to_bincode(),
                struct.pack("<Q", self.model_length),
            )
        )

    @classmethod
    def from_bincode(cls, data: bytes | memoryview) -> RoundParameters:
        view = memoryview(data)
        if len(view) < ROUND_PARAMETERS_LENGTH:
            raise LengthError(
                f"round parameters have {ROUND_PARAMETERS_LENGTH} bytes, the body has {len(view)}"
            )
        _check_prefix(view, 0, 32, "the round public key")
        _check_prefix(view, 56, 32, "the round seed")
        sum_prob, update_prob = struct.unpack_from("<dd", view, 40)
        (model_length,) = struct.unpack_from("<Q", view, 128)
        return cls(
            pk=bytes(view[8:40]),
            sum=sum_prob,
            update=update_prob,
            seed=bytes(view[64:96]),
            mask_config=MaskConfigPair(
                MaskConfig.from_bincode(view[96:112]), MaskConfig.from_bincode(view[112:128])
            ),
            model_length=model_length,
        )


def _encode_map(entries: dict[bytes, bytes], value_length: int) -> bytes:
    value_prefix = struct.pack("<Q", value_length)
    parts = [struct.pack("<Q", len(entries))]
    for key, value in entries.items():
        if len(key) != 32 or len(value) != value_length:
            raise LengthError(f"dictionary entries are a 32-byte key and a {value_length}-byte value")
        parts += (_KEY_PREFIX, key, value_prefix, value)
    return b"".join(parts)


def _decode_map(data: bytes | memoryview, value_length: int, what: str) -> dict[bytes, bytes]:
    view = memoryview(data)
    if len(view) < 8:
        raise LengthError(f"a {what} starts with an 8-byte entry count")
    (count,) = struct.unpack_from("<Q", view)
    entry = 16 + 32 + value_length
    if count > (len(view) - 8) // entry:
        raise LengthError(f"the {what} announces {count} entries, the body holds fewer")
    result: dict[bytes, bytes] = {}
    pos = 8
    for _ in range(count):
        _check_prefix(view, pos, 32, f"a {what} key")
        _check_prefix(view, pos + 40, value_length, f"a {what} value")
        key = bytes(view[pos + 8 : pos + 40])
        if key in result:
            raise DuplicateKeyError(f"the {what} lists the key {key.hex()} twice")
        result[key] = bytes(view[pos + 48 : pos + 48 + value_length])
        pos += entry
    return result


def encode_sum_dict(sum_dict: dict[bytes, bytes]) -> bytes:
    """`GET /sums`: sum participant pk -> its ephemeral X25519 pk."""
    return _encode_map(sum_dict, 32)


def decode_sum_dict(data: bytes | memoryview) -> dict[bytes, bytes]:
    return _decode_map(data, 32, "sum dictionary")


def encode_seed_dict(seed_dict: dict[bytes, bytes]) -> bytes:
    """`GET /seeds?pk=`: update participant pk -> mask seed sealed to the sum participant."""
    return _encode_map(seed_dict, ENCRYPTED_SEED_LENGTH)


def decode_seed_dict(data: bytes | memoryview) -> dict[bytes, bytes]:
    return _decode_map(data, ENCRYPTED_SEED_LENGTH, "seed dictionary")
