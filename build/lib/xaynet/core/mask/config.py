"""Mask configurations: the four enums, their two encodings and the constants they imply.

A configuration travels in two different encodings (MASKING.md §1.1-1.2): as four raw bytes
inside every MaskObject, and as four u32 bincode *variant indices* in `GET /params`. Bound
and model type differ between the two (Bmax is byte 255 but index 4), so each enum carries
both numbers explicitly instead of relying on its position.
"""

from __future__ import annotations

import enum
import json
import struct
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from typing import Self

from xaynet.core.errors import InvalidMaskConfigError


class _WireEnum(enum.Enum):
    """An enum whose members know their MaskObject byte and their bincode index."""

    byte: int
    index: int

    def __new__(cls, byte: int, index: int) -> Self:
        member = object.__new__(cls)
        member._value_ = byte
        member.byte = byte
        member.index = index
        return member

    @classmethod
    def from_byte(cls, value: int) -> Self:
        for member in cls:
            if member.byte == value:
                return member
        raise InvalidMaskConfigError(f"{value} is not a valid {cls.__name__} byte")

    @classmethod
    def from_index(cls, value: int) -> Self:
        for member in cls:
            if member.index == value:
                return member
        raise InvalidMaskConfigError(f"{value} is not a valid {cls.__name__} variant index")

    @classmethod
    def from_name(cls, name: str) -> Self:
        """Parse the name used in config files ("Prime", "F32", "B0", "M3", case-insensitive)."""
        for member in cls:
            if member.name.lower() == name.strip().lower():
                return member
        names = ", ".join(m.name for m in cls)
        raise InvalidMaskConfigError(f"{name!r} is not a {cls.__name__}; expected one of {names}")


class GroupType(_WireEnum):
    """Which family of group orders a configuration uses."""

    INTEGER = (0, 0)
    PRIME = (1, 1)
    POWER2 = (2, 2)


class DataType(_WireEnum):
    """The primitive type of the model weights."""

    F32 = (0, 0)
    F64 = (1, 1)
    I32 = (2, 2)
    I64 = (3, 3)

    @property
    def is_float(self) -> bool:
        return self in (DataType.F32, DataType.F64)


class BoundType(_WireEnum):
    """Symmetric clamp bound of the scaled weights."""

    B0 = (0, 0)
    B2 = (2, 1)
    B4 = (4, 2)
    B6 = (6, 3)
    BMAX = (255, 4)


class ModelType(_WireEnum):
    """How many objects one aggregate may hold: 10^3 .. 10^12."""

    M3 = (3, 0)
    M6 = (6, 1)
    M9 = (9, 2)
    M12 = (12, 3)


_F32_MAX = (2**24 - 1) * 2**104
_F64_MAX = (2**53 - 1) * 2**971


def _load_orders() -> dict[bytes, int]:
    text = resources.files("xaynet.core.mask").joinpath("orders.json").read_text()
    return {bytes.fromhex(k): int(v) for k, v in json.loads(text).items()}


_ORDERS = _load_orders()


@dataclass(frozen=True)
class MaskConfig:
    """One mask configuration; all derived constants are exact integers."""

    group_type: GroupType
    data_type: DataType
    bound_type: BoundType
    model_type: ModelType

    # -- encodings -----------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The 4 bytes written inside a MaskObject."""
        return bytes((self.group_type.byte, self.data_type.byte, self.bound_type.byte, self.model_type.byte))

    @classmethod
    def from_bytes(cls, raw: bytes | bytearray | memoryview) -> MaskConfig:
        if len(raw) < 4:
            raise InvalidMaskConfigError(f"a mask config needs 4 bytes, got {len(raw)}")
        try:
            return _CONFIGS_BY_BYTES[bytes(raw[:4])]
        except KeyError:
            pass
        # Build the precise error: which of the four bytes is wrong.
        GroupType.from_byte(raw[0])
        DataType.from_byte(raw[1])
        BoundType.from_byte(raw[2])
        ModelType.from_byte(raw[3])
        raise InvalidMaskConfigError(f"mask config bytes {bytes(raw[:4]).hex()} are not valid")

    def to_bincode(self) -> bytes:
        """The 16 bytes (four u32 LE variant indices) used in `GET /params`."""
        return struct.pack(
            "<4I",
            self.group_type.index,
            self.data_type.index,
            self.bound_type.index,
            self.model_type.index,
        )

    @classmethod
    def from_bincode(cls, raw: bytes | memoryview) -> MaskConfig:
        if len(raw) < 16:
            raise InvalidMaskConfigError(f"a bincode mask config needs 16 bytes, got {len(raw)}")
        g, d, b, m = struct.unpack_from("<4I", raw)
        return cls(
            GroupType.from_index(g),
            DataType.from_index(d),
            BoundType.from_index(b),
            ModelType.from_index(m),
        )

    @classmethod
    def from_names(cls, group: str, data: str, bound: str, model: str) -> MaskConfig:
        return cls(
            GroupType.from_name(group),
            DataType.from_name(data),
            BoundType.from_name(bound),
            ModelType.from_name(model),
        )

    def __str__(self) -> str:
        return (
            f"{self.group_type.name.title()}/{self.data_type.name}/"
            f"{self.bound_type.name.replace('BMAX', 'Bmax')}/{self.model_type.name}"
        )

    # -- derived constants (MASKING.md §1.3) --------------------------------------------
    @cached_property
    def order(self) -> int:
        """The group order q; elements are integers in [0, q)."""
        return _ORDERS[self.to_bytes()]

    @cached_property
    def add_shift(self) -> int:
        """A: scaled weights are clamped to [-A, A]."""
        if self.bound_type is not BoundType.BMAX:
            return {BoundType.B0: 1, BoundType.B2: 100, BoundType.B4: 10_000}.get(self.bound_type, 1_000_000)
        return {
            DataType.F32: _F32_MAX,
            DataType.F64: _F64_MAX,
            DataType.I32: 2**31,
            DataType.I64: 2**63,
        }[self.data_type]

    @cached_property
    def exp_shift_pow10(self) -> int:
        """k with E = 10^k: how many decimal places of a weight survive the encoding."""
        if self.bound_type is BoundType.BMAX and self.data_type is DataType.F32:
            return 45
        if self.bound_type is BoundType.BMAX and self.data_type is DataType.F64:
            return 324
        return 20 if self.data_type is DataType.F64 else 10

    @cached_property
    def exp_shift(self) -> int:
        """E: weights are multiplied by E before flooring to an integer."""
        return int(10**self.exp_shift_pow10)

    @cached_property
    def max_models(self) -> int:
        """N: at most this many objects may be summed into one aggregate."""
        return int(10**self.model_type.byte)

    @cached_property
    def bytes_per_number(self) -> int:
        """Fixed width of one serialized element: bytes needed for q - 1."""
        return ((self.order - 1).bit_length() + 7) // 8

    @cached_property
    def draw_bytes(self) -> int:
        """PRNG bytes per sampling attempt: bytes needed for q itself (MASKING.md §4.3)."""
        return (self.order.bit_length() + 7) // 8

    @cached_property
    def fits_uint64(self) -> bool:
        """Whether every element fits a numpy uint64 (the fast path)."""
        return self.bytes_per_number <= 8

    @cached_property
    def shift_product(self) -> int:
        """A * E, an integer for every configuration."""
        return self.add_shift * self.exp_shift


@dataclass(frozen=True)
class MaskConfigPair:
    """The (vector, unit) pair used for the model and for its scalar."""

    vect: MaskConfig
    unit: MaskConfig

    @classmethod
    def same(cls, config: MaskConfig) -> MaskConfigPair:
        """The pair the original coordinator always publishes: one config for both."""
        return cls(config, config)


ALL_CONFIGS: tuple[MaskConfig, ...] = tuple(
    MaskConfig(g, d, b, m) for g in GroupType for d in DataType for b in BoundType for m in ModelType
)
_CONFIGS_BY_BYTES = {c.to_bytes(): c for c in ALL_CONFIGS}

DEFAULT_CONFIG = MaskConfig(GroupType.PRIME, DataType.F32, BoundType.B0, ModelType.M3)
