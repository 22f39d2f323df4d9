"""MaskObject: a vector of group elements plus one unit (scalar) element, and its bytes.

Layout (MASKING.md §5): vect config (4) ‖ n (u32 BE) ‖ n·bpn_v element bytes (LE) ‖
unit config (4) ‖ bpn_u element bytes (LE). No overall length: parsers walk it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from xaynet.core.errors import ElementRangeError, LengthError
from xaynet.core.mask.config import MaskConfig, MaskConfigPair
from xaynet.core.mask.elements import (
    Elements,
    check_below,
    decode_elements,
    encode_element,
    encode_elements,
)


@dataclass(frozen=True, eq=False)
class MaskObject:
    """Masked model, mask or aggregate: vector elements and one unit element.

    Elements are *not* range-checked on parsing (the original does not either); aggregation
    and unmasking check them (`validate_range`).
    """

    vect_config: MaskConfig
    vect: Elements
    unit_config: MaskConfig
    unit: int

    @property
    def configs(self) -> MaskConfigPair:
        return MaskConfigPair(self.vect_config, self.unit_config)

    def __len__(self) -> int:
        return len(self.vect)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MaskObject):
            return NotImplemented
        return (
            self.vect_config == other.vect_config
            and self.unit_config == other.unit_config
            and self.unit == other.unit
            and len(self.vect) == len(other.vect)
            and bool(np.array_equal(self.vect, other.vect))
        )

    __hash__ = None  # type: ignore[assignment]  # mutable numpy content

    def validate_range(self) -> None:
        """Raise `ElementRangeError` unless every element is below its order."""
        check_below(self.vect, self.vect_config.order, "the vector")
        if self.unit >= self.unit_config.order:
            raise ElementRangeError(
                f"the unit element {self.unit} is not below the order {self.unit_config.order}"
            )

    # -- bytes -------------------------------------------------------------------------
    def serialized_length(self) -> int:
        return serialized_length(len(self.vect), self.vect_config, self.unit_config)

    def to_bytes(self) -> bytes:
        v, u = self.vect_config, self.unit_config
        return b"".join(
            (
                v.to_bytes(),
                struct.pack(">I", len(self.vect)),
                encode_elements(self.vect, v.bytes_per_number),
                u.to_bytes(),
                encode_element(self.unit, u.bytes_per_number),
            )
        )

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview, offset: int = 0) -> tuple[MaskObject, int]:
        """Parse one object at `buf[offset:]`; return it and the offset just past it."""
        end = len(buf)
        if offset + 8 > end:
            raise LengthError("a mask object needs at least 8 bytes for its config and length")
        vect_config = MaskConfig.from_bytes(buf[offset : offset + 4])
        (count,) = struct.unpack_from(">I", buf, offset + 4)
        width = vect_config.bytes_per_number
        pos = offset + 8
        if pos + count * width + 4 > end:
            raise LengthError(
                f"the mask object announces {count} elements of {width} bytes; the buffer ends first"
            )
        vect = decode_elements(buf, pos, count, width, wide=not vect_config.fits_uint64)
        pos += count * width
        unit_config = MaskConfig.from_bytes(buf[pos : pos + 4])
        pos += 4
        unit_width = unit_config.bytes_per_number
        if pos + unit_width > end:
            raise LengthError("the mask object's unit element is cut short")
        unit = int.from_bytes(bytes(buf[pos : pos + unit_width]), "little")
        return cls(vect_config, vect, unit_config, unit), pos + unit_width

    @classmethod
    def from_bytes(cls, buf: bytes | bytearray | memoryview) -> MaskObject:
        """Parse a buffer that holds exactly one object."""
        obj, end = cls.parse(buf)
        if end != len(buf):
            raise LengthError(f"{len(buf) - end} bytes after the mask object")
        return obj


def serialized_length(count: int, vect: MaskConfig, unit: MaskConfig) -> int:
    """M = 12 + n·bpn_v + bpn_u (WIRE.md §4.4)."""
    return 12 + count * vect.bytes_per_number + unit.bytes_per_number
