"""The bound advisor: which mask bound type holds a model, and what a round's bound would clamp.

Before masking, every weight is multiplied by the participant's scalar and clamped to the
round's bound [-A, A]; the scalar itself is clamped to [0, A] (MASKING.md §2.2, §3). Both
happen silently in the original, and both bend the global model: a clamped weight changes the
mean, a clamped scalar (say a raw sample count of 37 with B0) turns a weighted mean into a
plain one. This module answers the two questions a developer has, with the codec's own exact
arithmetic so its verdict is exactly what the masking will do:

* `advise(weights, max_scalar)`: the value range, and the smallest bound type holding every
  weight times the largest scalar (and that scalar) — for choosing `[mask] bound_type`;
* `check_clamping(weights, scalar, configs)`: what this round's config would clamp for this
  participant, with a message naming the bound type that would fit.

The flatten helpers, the SDK's once-per-participant warning and test-drive's refusal all use
these two functions, so they never disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from xaynet.core.mask.codec import clamp_scalar, to_local_model
from xaynet.core.mask.config import BoundType, DataType, GroupType, MaskConfig, MaskConfigPair, ModelType

_DTYPE_TO_DATA_TYPE = {
    np.dtype(np.float32): DataType.F32,
    np.dtype(np.float64): DataType.F64,
    np.dtype(np.int32): DataType.I32,
    np.dtype(np.int64): DataType.I64,
}


def bound_value(bound_type: BoundType, data_type: DataType) -> int:
    """A: the bound of `bound_type` for weights of `data_type` (Bmax depends on the type)."""
    return MaskConfig(GroupType.PRIME, data_type, bound_type, ModelType.M3).add_shift


def bound_name(bound_type: BoundType) -> str:
    """The spelling of config files: B0 … B6, Bmax."""
    return "Bmax" if bound_type is BoundType.BMAX else bound_type.name


def describe_bound(bound_type: BoundType, data_type: DataType) -> str:
    """'B2 (±100)', 'Bmax (±3.4e+38 for F32)'."""
    value = bound_value(bound_type, data_type)
    shown = f"{value:,}" if value <= 10**6 else f"{float(value):.2g} for {data_type.name}"
    return f"{bound_name(bound_type)} (±{shown})"


def smallest_bound(needed: Fraction | float, data_type: DataType) -> BoundType | None:
    """The smallest bound type whose A is at least `needed`; None if none is (or `needed` is NaN)."""
    if isinstance(needed, float) and math.isnan(needed):
        return None
    for bound_type in BoundType:  # declared from smallest to largest
        if needed <= bound_value(bound_type, data_type):
            return bound_type
    return None


def model_type_for(updates_per_round: int) -> ModelType:
    """The smallest model type that can aggregate `updates_per_round` masked models (M3 = 1000)."""
    for model_type in ModelType:
        if updates_per_round <= 10**model_type.byte:
            return model_type
    raise ValueError(f"{updates_per_round} updates per round exceed what any model type aggregates (10^12)")


def data_type_of(values: npt.NDArray[Any]) -> DataType:
    """The round data type matching a numpy array (float16 and smaller integers: F32)."""
    return _DTYPE_TO_DATA_TYPE.get(values.dtype, DataType.F64 if values.dtype.kind == "f" else DataType.F32)


def _peak(values: npt.NDArray[Any]) -> Fraction | None:
    """max |v|, exactly, from the minimum and maximum (no temporary array); None for NaN/inf."""
    if len(values) == 0:
        return Fraction(0)
    low, high = values.min(), values.max()
    if values.dtype.kind == "f":
        if not (np.isfinite(low) and np.isfinite(high)):
            return None
        return Fraction(max(-float(low), float(high)))  # float arrays hold exact binary values
    return Fraction(max(-int(low), int(high)))


def _count_beyond(values: npt.NDArray[Any], threshold: Fraction) -> int:
    """How many |v| > threshold, exactly, without a Python loop over the values."""
    if len(values) == 0:
        return 0
    if values.dtype.kind == "f":
        try:
            nearest = float(threshold)  # correctly rounded
        except OverflowError:
            return 0
        magnitude = np.abs(values.astype(np.float64))
        # No float lies strictly between `threshold` and its nearest float.
        if Fraction(nearest) > threshold:
            return int(np.count_nonzero(magnitude >= nearest))
        return int(np.count_nonzero(magnitude > nearest))
    whole = math.floor(threshold)  # for integers, |v| > T  <=>  |v| > floor(T)
    if whole >= 2**63 - 1:
        return 0
    ints = values.astype(np.int64)
    return int(np.count_nonzero(ints > whole) + np.count_nonzero(ints < -whole))


def _clamped_weights(values: npt.NDArray[Any], scalar: Fraction, bound: int) -> int:
    """Weights w with |w · scalar| > bound (what the codec clamps)."""
    if scalar <= 0:
        return 0
    return _count_beyond(values, Fraction(bound) / scalar)


def _show(value: Fraction) -> str:
    """A rational for people; beyond float range as a power of ten."""
    try:
        return f"{float(value):.4g}"
    except OverflowError:
        return f"~1e{math.floor(math.log10(value.numerator) - math.log10(value.denominator))}"


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def _as_fraction(scalar: float) -> Fraction | None:
    return None if math.isnan(scalar) or math.isinf(scalar) else Fraction(scalar)


@dataclass(frozen=True)
class BoundAdvice:
    """The value range of a model and which bound types hold it times the largest scalar."""

    data_type: DataType
    count: int
    low: float
    high: float
    peak: Fraction  # max |weight|, exact
    max_scalar: float
    clamped: dict[BoundType, int]  # weights each bound type would clamp (with max_scalar)

    @property
    def scaled_peak(self) -> Fraction:
        """max |weight × largest scalar|: what the bound must hold."""
        scalar = _as_fraction(self.max_scalar)
        return self.peak * max(scalar, Fraction(0)) if scalar is not None else Fraction(0)

    @property
    def scalar_ok(self) -> bool:
        """A scalar below 0, NaN or infinite is clamped by every bound type."""
        scalar = _as_fraction(self.max_scalar)
        return scalar is not None and scalar >= 0

    @property
    def smallest(self) -> BoundType | None:
        """The smallest bound type that clamps neither a weight nor the scalar."""
        if not self.scalar_ok:
            return None
        return smallest_bound(max(self.scaled_peak, Fraction(self.max_scalar)), self.data_type)

    def fits(self, bound_type: BoundType) -> bool:
        return (
            self.scalar_ok
            and self.clamped[bound_type] == 0
            and (Fraction(self.max_scalar) <= bound_value(bound_type, self.data_type))
        )

    def __str__(self) -> str:
        head = (
            f"{_plural(self.count, 'weight')} in [{self.low:.4g}, {self.high:.4g}]; "
            f"× largest scalar {self.max_scalar:g} → |w·s| ≤ {_show(self.scaled_peak)}"
        )
        if not self.scalar_ok:
            return (
                f"{head}; the scalar {self.max_scalar} is clamped to 0 by every bound type: use scalars ≥ 0"
            )
        smallest = self.smallest
        if smallest is None:
            return f"{head}; no bound type of {self.data_type.name} holds it: scale the model down"
        advice = f"{head}; smallest bound type: {describe_bound(smallest, self.data_type)}"
        below = [b for b in BoundType if b.byte < smallest.byte]
        if below:
            tighter = below[-1]
            count = self.clamped[tighter]
            what = _plural(count, "weight") if count else f"the scalar {self.max_scalar:g}"
            advice += f" ({bound_name(tighter)} would clamp {what})"
        return advice


def advise(weights: Any, max_scalar: float = 1.0, data_type: DataType | None = None) -> BoundAdvice:
    """Value range and bound advice for a flat model, as the round's data type will hold it.

    `weights` is converted exactly as the SDK converts a local model (floats narrowed to f32 in
    an F32 round); NaN or infinite weights raise `EncodingError`, like `set_model` does.
    """
    source = np.asarray(weights).reshape(-1)
    kind = data_type or data_type_of(source)
    values = to_local_model(source, kind)
    scalar = _as_fraction(max_scalar)
    clamped = {
        bound_type: 0 if scalar is None else _clamped_weights(values, scalar, bound_value(bound_type, kind))
        for bound_type in BoundType
    }
    low, high = (float(values.min()), float(values.max())) if len(values) else (0.0, 0.0)
    peak = _peak(values)
    assert peak is not None  # to_local_model refused NaN and infinities
    return BoundAdvice(kind, len(values), low, high, peak, max_scalar, clamped)


@dataclass(frozen=True)
class Clamping:
    """What one round's mask config clamps of one participant's model and scalar."""

    config: MaskConfig
    scalar: float
    effective_scalar: Fraction  # s' after clamping: the aggregation weight actually used
    weights_clamped: int
    advice: BoundAdvice

    @property
    def scalar_clamped(self) -> bool:
        return _as_fraction(self.scalar) != self.effective_scalar

    def message(self) -> str:
        bound = describe_bound(self.config.bound_type, self.config.data_type)
        parts = []
        if self.weights_clamped:
            parts.append(
                f"{self.weights_clamped:,} of {self.advice.count:,} weights × scalar {self.scalar:g} exceed "
                f"the round's bound {bound} (largest |w·s| = {_show(self.advice.scaled_peak)}) "
                "and are clamped to it"
            )
        if self.scalar_clamped:
            parts.append(
                f"the scalar {self.scalar:g} is clamped to {float(self.effective_scalar):g} by {bound}, "
                "so it no longer weights this model as intended (use scalars in [0, 1], e.g. n_i / n_max)"
            )
        fix = self.advice.smallest
        remedy = (
            f"bound type {describe_bound(fix, self.config.data_type)} would hold it "
            f'([mask] bound_type = "{bound_name(fix)}")'
            if fix is not None
            else "no bound type holds it: scale the model or the scalar down"
        )
        return f"the masked model is distorted: {'; '.join(parts)}; {remedy}"


def check_clamping(weights: Any, scalar: float, configs: MaskConfigPair | MaskConfig) -> Clamping | None:
    """What masking `weights` with `scalar` in a round of `configs` clamps; None if nothing.

    Exactly the codec's rule: the scalar is clamped to [0, A_unit], then each weight times that
    clamped scalar is clamped to [-A, A] (MASKING.md §2.2, §3). It runs before every update, so
    the common case costs two reductions over the weights and allocates nothing.
    """
    pair = configs if isinstance(configs, MaskConfigPair) else MaskConfigPair.same(configs)
    vect = pair.vect
    source = np.asarray(weights).reshape(-1)
    ready = _DTYPE_TO_DATA_TYPE.get(source.dtype) is vect.data_type
    values = source if ready else to_local_model(source, vect.data_type)
    peak = _peak(values)
    if peak is None:
        return None  # NaN or infinite weights: the SDK refuses the model with its own error
    effective = clamp_scalar(scalar, pair.unit)
    scalar_clamped = _as_fraction(scalar) != effective
    if not scalar_clamped and peak * effective <= vect.add_shift:
        return None
    clamped = _clamped_weights(values, effective, vect.add_shift)
    return Clamping(vect, scalar, effective, clamped, advise(values, scalar, vect.data_type))
