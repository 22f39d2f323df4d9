"""The global model: exact reduced rationals, their bincode form and their float reading.

The coordinator publishes the unmasked model as a bincode `Vec<Ratio<BigInt>>` (API.md §7.2):
u64 count, then per weight numerator and denominator, each `i8 sign ‖ u64 digit count ‖
u32 LE digits` (least significant first, no high zero digits). Publishing reduced fractions
keeps the original clients' float conversion well-defined (MASKING.md §6.2, §10).
"""

from __future__ import annotations

import hashlib
import math
import struct
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from xaynet.core.errors import DecodeError, EncodingError, LengthError
from xaynet.core.mask.config import DataType

Integers = npt.NDArray[Any]
_MAX_FINITE = {
    DataType.F32: (2**24 - 1) * 2**104,
    DataType.F64: (2**53 - 1) * 2**971,
}
_INT_RANGE = {DataType.I32: (-(2**31), 2**31 - 1), DataType.I64: (-(2**63), 2**63 - 1)}


class GlobalModel:
    """A vector of exact rationals `numerators[i] / denominators[i]`, reduced, denominator > 0.

    Arrays are int64 when every term fits (the common configs), else numpy object arrays.
    """

    __slots__ = ("denominators", "numerators")

    def __init__(self, numerators: Integers, denominators: Integers) -> None:
        if len(numerators) != len(denominators):
            raise LengthError("numerators and denominators differ in length")
        self.numerators = numerators
        self.denominators = denominators

    @classmethod
    def from_fractions(cls, numerators: Integers, denominator: int | Integers) -> GlobalModel:
        """Reduce `numerators / denominator` (vectorised gcd) into canonical form."""
        nums = np.asarray(numerators)
        if nums.dtype == object or (isinstance(denominator, np.ndarray) and denominator.dtype == object):
            dens = np.broadcast_to(np.asarray(denominator, dtype=object), nums.shape).copy()
            nums = nums.astype(object)
        else:
            nums = nums.astype(np.int64)
            dens = np.broadcast_to(np.asarray(denominator, dtype=np.int64), nums.shape).copy()
        if (dens == 0).any():
            raise ZeroDivisionError("a global model weight has denominator 0")
        sign = np.where(dens < 0, -1, 1)
        nums, dens = nums * sign, dens * sign
        if np.ndim(denominator) == 0 and nums.dtype != object:
            # One shared denominator: gcd(n, d) = gcd(n mod d, d) keeps Euclid short.
            divisor = np.gcd(nums % dens, dens)
        else:
            divisor = np.gcd(nums, dens)
        divisor = np.where(divisor == 0, 1, divisor)
        return cls(nums // divisor, dens // divisor)

    @classmethod
    def from_list(cls, values: list[Fraction]) -> GlobalModel:
        nums = np.empty(len(values), dtype=object)
        dens = np.empty(len(values), dtype=object)
        nums[:] = [v.numerator for v in values]
        dens[:] = [v.denominator for v in values]
        return cls.from_fractions(nums, dens)

    def __len__(self) -> int:
        return len(self.numerators)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GlobalModel):
            return NotImplemented
        return self.as_fractions() == other.as_fractions()

    __hash__ = None  # type: ignore[assignment]

    def as_fractions(self) -> list[Fraction]:
        return [Fraction(int(n), int(d)) for n, d in zip(self.numerators, self.denominators, strict=True)]

    # -- bincode ---------------------------------------------------------------------------
    def to_bincode(self) -> bytes:
        terms = np.empty(2 * len(self), dtype=self.numerators.dtype if self._is_int64() else object)
        terms[0::2] = self.numerators
        terms[1::2] = self.denominators
        head = struct.pack("<Q", len(self))
        if self._is_int64():
            return head + _encode_int64_terms(terms.astype(np.int64))
        return head + b"".join(_encode_bigint(int(v)) for v in terms)

    def _is_int64(self) -> bool:
        return object not in (self.numerators.dtype, self.denominators.dtype)

    @classmethod
    def from_bincode(cls, data: bytes | memoryview) -> GlobalModel:
        """Parse a `/model` body; trailing bytes are ignored like bincode does."""
        view = memoryview(data)
        if len(view) < 8:
            raise LengthError("a model body starts with an 8-byte count")
        (count,) = struct.unpack_from("<Q", view)
        if count > (len(view) - 8) // 18:
            raise LengthError(f"the model announces {count} weights, the body is too short")
        terms = _decode_int64_terms(view, 2 * count)
        if terms is not None:
            if count and (terms[1::2] == 0).any():
                raise DecodeError("a model weight has denominator 0")
            return cls.from_fractions(terms[0::2], terms[1::2])
        # Some number needs more than 63 bits (or the body is malformed: this names where).
        values: list[int] = []
        pos = 8
        for _ in range(2 * count):
            value, pos = _decode_bigint(view, pos)
            values.append(value)
        nums = np.empty(count, dtype=object)
        dens = np.empty(count, dtype=object)
        nums[:] = values[0::2]
        dens[:] = values[1::2]
        if count and (dens == 0).any():
            raise DecodeError("a model weight has denominator 0")
        return cls.from_fractions(nums, dens)

    def checksum(self) -> str:
        """SHA-256 of the bincode body: what operators publish and clients can compare."""
        return hashlib.sha256(self.to_bincode()).hexdigest()

    # -- reading it as the original client does (MASKING.md §10) ---------------------------
    def to_numpy(self, data_type: DataType) -> npt.NDArray[Any]:
        """The weights as the wheel's `global_model()` would return them.

        Float types: numerator and denominator are rounded separately, then divided in the
        target type (not correctly rounded, but identical to the original). Integer types:
        truncation toward zero. Values out of range raise `EncodingError`; where the
        original would loop forever (an overflowing quotient) we raise too.
        """
        if not data_type.is_float:
            return self._to_integers(data_type)
        target = np.float32 if data_type is DataType.F32 else np.float64
        limit = _MAX_FINITE[data_type]
        if self._is_int64():
            nums = self.numerators.astype(np.int64)
            dens = self.denominators.astype(np.int64)
            # |n| < 2^63 and d < 2^63: values are within range; C casts round to nearest even.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                result = nums.astype(target) / dens.astype(target)
            result[nums == 0] = 0
        else:
            result = np.empty(len(self), dtype=target)
            for i, (raw_n, raw_d) in enumerate(zip(self.numerators, self.denominators, strict=True)):
                n, d = int(raw_n), int(raw_d)
                if abs(Fraction(n, d)) > limit:
                    raise EncodingError(f"weight {i} = {n}/{d} does not fit {data_type.name}")
                result[i] = _original_ratio_to_float(n, d, target)
        if not np.isfinite(result).all():
            raise EncodingError(f"a weight does not convert to a finite {data_type.name}")
        return np.asarray(result)

    def _to_integers(self, data_type: DataType) -> npt.NDArray[Any]:
        low, high = _INT_RANGE[data_type]
        nums, dens = self.numerators.astype(object), self.denominators.astype(object)
        quotient = np.where(nums < 0, -((-nums) // dens), nums // dens)
        if len(quotient) and (min(quotient) < low or max(quotient) > high):
            raise EncodingError(f"a weight does not fit {data_type.name}")
        return np.asarray(quotient.astype(np.int32 if data_type is DataType.I32 else np.int64))


def _encode_int64_terms(terms: npt.NDArray[np.int64]) -> bytes:
    """Vectorised BigInt encoding for terms with |v| < 2^63: 9, 13 or 17 bytes each."""
    magnitude = np.abs(terms).astype(np.uint64)
    digits = (magnitude > 0).astype(np.int64) + (magnitude >= (1 << 32)).astype(np.int64)
    sizes = 9 + 4 * digits
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    out = np.zeros(int(sizes.sum()), dtype=np.uint8)
    out[starts] = np.sign(terms).astype(np.int8).view(np.uint8)
    out[starts + 1] = digits.astype(np.uint8)  # the u64 count < 256: only its first byte
    low = (magnitude & np.uint64(0xFFFFFFFF)).astype("<u4").view(np.uint8).reshape(-1, 4)
    high = (magnitude >> np.uint64(32)).astype("<u4").view(np.uint8).reshape(-1, 4)
    has_low, has_high = digits >= 1, digits >= 2
    for j in range(4):
        out[starts[has_low] + 9 + j] = low[has_low, j]
        out[starts[has_high] + 13 + j] = high[has_high, j]
    return out.tobytes()


def _decode_int64_terms(view: memoryview, n_terms: int) -> npt.NDArray[np.int64] | None:
    """Vectorised BigInt decoding when every term has at most two digits and fits int64.

    Records are `i8 sign ‖ u64 digit count ‖ digits`, so where record i+1 starts depends on
    every earlier count. Candidates are the offsets that look like a record head (sign byte
    0/1/-1, count 0..2 with seven zero high bytes); each points at the offset after its record,
    and pointer doubling (log2 n rounds of numpy gathers) marks the chain that starts at byte
    8 — the real records. None when that chain breaks (a longer number, or a malformed body):
    the per-number decoder then handles it and names the problem.
    """
    data = np.frombuffer(view, dtype=np.uint8)
    size = len(data)
    if n_terms == 0:
        return np.zeros(0, dtype=np.int64)
    low_end = size - 9  # the last offset where a 9-byte head fits
    if low_end < 8:
        return None
    # Overlapping little-endian views: u64_at[i] / u32_at[i] read the 8 / 4 bytes from offset i.
    u64_at = np.ndarray((size - 7,), dtype="<u8", buffer=data, strides=(1,))
    u32_at = np.ndarray((size - 3,), dtype="<u4", buffer=data, strides=(1,))
    sign = data[8 : low_end + 1]
    ok = u64_at[9 : low_end + 2] <= 2
    ok &= (sign == 0) | (sign == 1) | (sign == 255)
    candidates = np.flatnonzero(ok) + 8
    if len(candidates) == 0 or candidates[0] != 8:
        return None
    digits = data[candidates + 1].astype(np.int64)
    following = candidates + 9 + 4 * digits
    m = len(candidates)
    jump = np.searchsorted(candidates, following)
    jump[jump >= m] = m
    linked = jump < m
    linked[linked] = candidates[jump[linked]] == following[linked]
    jump[~linked] = m  # a dead end (or the body's end): the sentinel
    jump = np.append(jump, m)
    on_chain = np.zeros(m + 1, dtype=bool)
    on_chain[0] = True
    reach = 1
    while reach < n_terms:
        on_chain[jump[on_chain]] = True
        jump = jump[jump]
        reach *= 2
    chain = np.flatnonzero(on_chain[:m])[:n_terms]
    if len(chain) < n_terms:
        return None
    starts = candidates[chain]
    counts = digits[chain]
    if starts[-1] + 9 + 4 * counts[-1] > size:
        return None

    def digit(offset: npt.NDArray[np.int64], present: npt.NDArray[np.bool_]) -> npt.NDArray[np.uint64]:
        value = u32_at[np.where(present, np.minimum(offset, size - 4), 0)].astype(np.uint64)
        return np.where(present, value, np.uint64(0))

    low = digit(starts + 9, counts >= 1)
    high = digit(starts + 13, counts >= 2)
    if (high >= np.uint64(1 << 31)).any():
        return None  # does not fit int64
    magnitude = (low | (high << np.uint64(32))).astype(np.int64)
    signs = data[starts].view(np.int8).astype(np.int64)
    if ((signs == 0) != (magnitude == 0)).any():
        raise DecodeError("a BigInt's sign does not match its magnitude")
    return np.asarray(signs * magnitude, dtype=np.int64)


def _encode_bigint(value: int) -> bytes:
    magnitude = abs(value)
    count = (magnitude.bit_length() + 31) // 32
    sign = (value > 0) - (value < 0)
    return struct.pack("<bQ", sign, count) + magnitude.to_bytes(4 * count, "little")


def _decode_bigint(view: memoryview, pos: int) -> tuple[int, int]:
    if pos + 9 > len(view):
        raise LengthError("a model body ends inside a number")
    sign, count = struct.unpack_from("<bQ", view, pos)
    if sign not in (-1, 0, 1):
        raise DecodeError(f"invalid BigInt sign byte {sign}")
    end = pos + 9 + 4 * count
    if end > len(view):
        raise LengthError("a model body ends inside a number's digits")
    magnitude = int.from_bytes(view[pos + 9 : end], "little")
    if (sign == 0) != (magnitude == 0):
        raise DecodeError("a BigInt's sign does not match its magnitude")
    return sign * magnitude, end


def _original_ratio_to_float(n: int, d: int, target: type[np.floating[Any]]) -> float:
    """num-bigint 0.3 `to_f32/to_f64` of each term, then one division (MASKING.md §10)."""
    num = _bigint_to_float(n, target)
    if num == 0:
        return 0.0
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return float(target(num) / target(_bigint_to_float(d, target)))


def _bigint_to_float(value: int, target: type[np.floating[Any]]) -> Any:
    magnitude = abs(value)
    dropped = max(0, magnitude.bit_length() - 64)
    top = magnitude >> dropped  # plain truncation, no sticky bit
    with np.errstate(over="ignore"):
        converted = (
            target(np.uint64(top)) * target(math.ldexp(1.0, dropped)) if dropped < 1024 else target(np.inf)
        )
    return -converted if value < 0 else converted
