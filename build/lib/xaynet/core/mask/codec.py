"""Weights and scalar -> group elements, with the original's exact rounding (MASKING.md §2-3).

    t_i = clamp(s' · w_i, -A, A);   e_i = floor((t_i + A) · E)

computed on exact values, never on rounded floats. Because A·E is an integer,
floor((t + A)·E) = clamp(floor(t·E), -A·E, A·E) + A·E, so everything reduces to flooring
`M · E · 2^x` for integers M, x, where w = M_w·2^x_w and s' = M_s·2^x_s are the exact binary
values of the inputs.

Two implementations of the same formula:
* an int64 path, used when every intermediate provably fits 63 bits (F32/I32 weights,
  E = 10^10, no Bmax, a scalar with few significant bits such as the default 1.0);
* an exact path on numpy object arrays of Python ints for everything else.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from xaynet.core.errors import EncodingError, ModelLengthError
from xaynet.core.mask.config import BoundType, DataType, MaskConfig
from xaynet.core.mask.elements import Elements

_F64_MAX = Fraction((2**53 - 1) * 2**971)
_FIVE_POW_10 = 5**10
_NUMPY_TYPES: dict[DataType, npt.DTypeLike] = {
    DataType.F32: np.float32,
    DataType.F64: np.float64,
    DataType.I32: np.int32,
    DataType.I64: np.int64,
}
# Significant bits of a weight of each type (ints count their sign-free magnitude).
_WEIGHT_BITS = {DataType.F32: 24, DataType.F64: 53, DataType.I32: 32, DataType.I64: 64}


def clamp_scalar(scalar: float, unit: MaskConfig) -> Fraction:
    """s': the participant's weight as the original sees it (MASKING.md §2.2).

    NaN -> 0, ±inf -> ±f64::MAX, then clamped to [0, A_u]; exact binary value otherwise.
    """
    if math.isnan(scalar):
        value = Fraction(0)
    elif math.isinf(scalar):
        value = _F64_MAX if scalar > 0 else -_F64_MAX
    else:
        value = Fraction(scalar)
    return min(max(value, Fraction(0)), Fraction(unit.add_shift))


def encode_scalar(scalar: float, unit: MaskConfig) -> int:
    """e_u = floor((s' + A_u) · E_u)."""
    s = clamp_scalar(scalar, unit)
    return math.floor((s + unit.add_shift) * unit.exp_shift)


def to_local_model(weights: Any, data_type: DataType, length: int | None = None) -> npt.NDArray[Any]:
    """Validate and convert user weights to the round's numpy type, strictly.

    Like the wheel's strict conversion: NaN and ±inf are refused, floats are narrowed to f32
    in an F32 round (refused if that overflows), integer rounds take integers in range only.
    """
    target = np.dtype(_NUMPY_TYPES[data_type])
    source = np.asarray(weights)
    if source.ndim != 1:
        source = source.reshape(-1)
    if length is not None and len(source) != length:
        raise ModelLengthError(f"the local model has {len(source)} weights, the round expects {length}")
    if data_type.is_float:
        if source.dtype.kind not in "fiub":
            raise EncodingError(f"weights of type {source.dtype} cannot be used in a {data_type.name} round")
        with np.errstate(over="ignore", invalid="ignore"):
            converted = source.astype(target)
        if not np.isfinite(converted).all():
            raise EncodingError(
                f"the local model holds NaN or infinite weights (or values too large for {data_type.name})"
            )
        return converted
    if source.dtype.kind == "O":
        try:
            values = [int(v) for v in source if isinstance(v, int | np.integer) and not isinstance(v, bool)]
        except (TypeError, ValueError) as exc:  # pragma: no cover - defensive
            raise EncodingError(str(exc)) from exc
        if len(values) != len(source):
            raise EncodingError(f"a {data_type.name} round takes integer weights only")
        info = np.iinfo(target)
        if values and (min(values) < info.min or max(values) > info.max):
            raise EncodingError(f"a weight does not fit {data_type.name}")
        return np.asarray(values, dtype=target)
    if source.dtype.kind not in "iu":
        raise EncodingError(f"a {data_type.name} round takes integer weights only, got {source.dtype}")
    info = np.iinfo(target)
    if len(source) and (int(source.min()) < info.min or int(source.max()) > info.max):
        raise EncodingError(f"a weight does not fit {data_type.name}")
    return source.astype(target)


def encode_weights(weights: npt.NDArray[Any], scalar: float, config: MaskConfig) -> Elements:
    """e_i for every weight: uint64 when the config fits 8 bytes, else Python ints."""
    s = clamp_scalar(scalar, config)
    if _fits_float64_path(weights, s, config):
        encoded = _encode_float64(weights, s, config)
    elif _fits_int64_path(weights, s, config):
        encoded = _encode_int64(weights, s, config)
    else:
        encoded = _encode_exact(weights, s, config)
    if config.fits_uint64:
        return encoded.astype(np.uint64)
    return encoded.astype(object)


def _significant_bits(value: Fraction) -> int:
    """Bits of the odd part of a dyadic rational's numerator."""
    numerator = value.numerator
    if numerator == 0:
        return 0
    return (numerator >> ((numerator & -numerator).bit_length() - 1)).bit_length()


def _fits_float64_path(weights: npt.NDArray[Any], s: Fraction, config: MaskConfig) -> bool:
    """Whether t·E is exact in float64: t has <= 29 significant bits and E = 10^10.

    10^10 = 5^10 · 2^10 has only 23 significant bits, so the product has at most 52.
    """
    if config.bound_type is BoundType.BMAX or config.exp_shift_pow10 != 10:
        return False
    if weights.dtype != np.float32 or (s != 0 and s < Fraction(1, 2**500)):
        return False
    return 24 + _significant_bits(s) <= 29


def _encode_float64(weights: npt.NDArray[Any], s: Fraction, config: MaskConfig) -> npt.NDArray[np.int64]:
    bound = float(config.add_shift)
    t = weights.astype(np.float64)
    if s != 1:
        t *= float(s)  # exact: at most 29 significant bits
    np.clip(t, -bound, bound, out=t)  # exact: A is a float64 integer
    t *= float(config.exp_shift)  # exact: at most 52 significant bits
    np.floor(t, out=t)  # exact floor of an exact value; |t| <= 10^16 converts exactly
    return t.astype(np.int64) + np.int64(config.shift_product)


def _fits_int64_path(weights: npt.NDArray[Any], s: Fraction, config: MaskConfig) -> bool:
    if config.bound_type is BoundType.BMAX or config.exp_shift_pow10 != 10:
        return False
    if weights.dtype not in (np.float32, np.int32):
        return False
    if s != 0 and s < Fraction(1, 2**500):
        return False
    if s.denominator & (s.denominator - 1):
        return False  # not dyadic (cannot happen for a clamped float, but be safe)
    sig = _significant_bits(s)
    wbits = 24 if weights.dtype == np.float32 else 32
    # s'·w exact in float64 (<= 53 bits), then M · 5^10 (< 2^23.3) must stay below 2^62.
    return wbits + sig <= 38


def _encode_int64(weights: npt.NDArray[Any], s: Fraction, config: MaskConfig) -> npt.NDArray[np.int64]:
    bound = float(config.add_shift)
    t = weights.astype(np.float64)
    if s != 1:
        t *= float(s)  # exact: at most 38 significant bits
    np.clip(t, -bound, bound, out=t)  # exact: A is a float64 integer
    # Read mantissa and exponent straight from the IEEE bits (cheaper than frexp/ldexp):
    # t = ±mantissa · 2^exponent with a 53-bit mantissa whose low 15 bits are zero, because
    # t has at most 38 significant bits. Dropping them keeps mantissa · 5^10 below 2^62.
    bits = t.view(np.int64)
    biased = (bits >> 52) & 0x7FF
    mantissa = ((bits & ((1 << 52) - 1)) | (1 << 52)) >> 15
    mantissa[biased == 0] = 0  # t == 0 (no subnormals: |t| >= 2^-649 whenever t != 0)
    np.negative(mantissa, out=mantissa, where=bits < 0)
    # t·E = mantissa · 5^10 · 2^(biased - 1075 + 15 + 10)
    product = mantissa * np.int64(_FIVE_POW_10)
    shift = biased - 1050
    right = np.clip(-shift, 0, 63)
    floored: npt.NDArray[np.int64] = np.right_shift(product, right)  # arithmetic shift = floor
    if (shift > 0).any():  # |t| >= 2^27 cannot pass the clamp (A <= 10^6); kept for safety
        floored <<= np.maximum(shift, 0)
    return floored + np.int64(config.shift_product)


def _encode_exact(weights: npt.NDArray[Any], s: Fraction, config: MaskConfig) -> npt.NDArray[Any]:
    shift_product = config.shift_product
    if weights.dtype.kind == "f":
        fraction, exponent = np.frexp(weights.astype(np.float64))
        mantissa = np.ldexp(fraction, 53).astype(np.int64).astype(object)
        exponent = exponent.astype(np.int64) - 53
    else:
        mantissa = weights.astype(object)
        exponent = np.zeros(len(weights), dtype=np.int64)
    if len(weights) == 0:
        return np.zeros(0, dtype=object)
    # s' = s_num / 2^k (dyadic); t·E = mantissa · s_num · E · 2^(exponent - k)
    s_num, s_den = s.numerator, s.denominator
    k = s_den.bit_length() - 1
    base = int(exponent.min())
    aligned = np.left_shift(mantissa, (exponent - base).astype(object))
    scaled = aligned * (s_num * config.exp_shift)
    total = base - k
    floored = scaled << total if total >= 0 else scaled >> (-total)
    floored = np.where(floored > shift_product, shift_product, floored)
    floored = np.where(floored < -shift_product, -shift_product, floored)
    return floored + shift_product
