"""Aggregation of masked objects and unmasking into the global model (MASKING.md §6-8).

The coordinator adds every accepted masked model into one running sum and, at the end of
the round, subtracts the sum participants' chosen mask. The checks run in the original's
order so that the same objects are refused for the same reasons.

For uint64 configs the running sum is kept *unreduced* as long as it provably cannot
overflow (`floor((2^64 - 1) / (q - 1))` additions, 922 337 for the default config, which is
more than the 1 000 models M3 allows): one numpy add per update, reduction once at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xaynet.core.errors import (
    ConfigMismatchError,
    ModelLengthError,
    NoModelError,
    TooManyModelsError,
    ZeroScalarSumError,
)
from xaynet.core.mask.config import MaskConfigPair
from xaynet.core.mask.elements import Elements, check_below, zeros
from xaynet.core.mask.masking import sub_mod
from xaynet.core.mask.model import GlobalModel
from xaynet.core.mask.object import MaskObject

_U64_MAX = (1 << 64) - 1


@dataclass
class Aggregation:
    """Running sum of masked models for one round."""

    configs: MaskConfigPair
    model_length: int
    nb_models: int = 0

    def __post_init__(self) -> None:
        vect = self.configs.vect
        self._wide = not vect.fits_uint64
        self._vect: Elements = zeros(self.model_length, self._wide)
        self._unit = 0
        self._unreduced = 0
        self._power2 = vect.order & (vect.order - 1) == 0
        self._headroom = _U64_MAX // max(vect.order - 1, 1)

    # -- checks (MASKING.md §7.1, in the original's order) ------------------------------
    def validate(self, obj: MaskObject) -> None:
        """Raise the error the original would give for adding `obj`; change nothing."""
        if obj.vect_config != self.configs.vect:
            raise ConfigMismatchError(
                f"the model uses mask config {obj.vect_config}, the round uses {self.configs.vect}"
            )
        if obj.unit_config != self.configs.unit:
            raise ConfigMismatchError(
                f"the scalar uses mask config {obj.unit_config}, the round uses {self.configs.unit}"
            )
        if len(obj.vect) != self.model_length:
            raise ModelLengthError(
                f"the model has {len(obj.vect)} elements, the round's model length is {self.model_length}"
            )
        if self.nb_models >= self.configs.vect.max_models:
            raise TooManyModelsError(
                f"the aggregate already holds {self.nb_models} models, the most that "
                f"{self.configs.vect.model_type.name} allows"
            )
        if self.nb_models >= self.configs.unit.max_models:
            raise TooManyModelsError(f"the aggregate already holds {self.nb_models} scalars")
        obj.validate_range()

    def add(self, obj: MaskObject) -> None:
        """Validate `obj` and add it to the sum."""
        self.validate(obj)
        self.add_validated(obj)

    def add_validated(self, obj: MaskObject) -> None:
        """Add an object that `validate` accepted (kept separate so callers can store first)."""
        order = self.configs.vect.order
        if self._wide:
            self._vect = (self._vect + obj.vect) % order
        else:
            if not self._power2 and self._unreduced + 1 >= self._headroom:
                self._reduce()
            np.add(self._vect, obj.vect, out=self._vect)
            self._unreduced += 1
        self._unit = (self._unit + obj.unit) % self.configs.unit.order
        self.nb_models += 1

    def _reduce(self) -> None:
        order = np.uint64(self.configs.vect.order)
        if self._power2:
            np.bitwise_and(self._vect, order - np.uint64(1), out=self._vect)
        else:
            np.remainder(self._vect, order, out=self._vect)
        self._unreduced = 0

    def masked_sum(self) -> MaskObject:
        """The reduced aggregate, as a MaskObject (for storage, or unmasking by hand)."""
        if not self._wide:
            self._reduce()
        return MaskObject(self.configs.vect, self._vect.copy(), self.configs.unit, self._unit)

    @classmethod
    def restore(
        cls, configs: MaskConfigPair, model_length: int, nb_models: int, total: MaskObject
    ) -> Aggregation:
        """Rebuild an aggregation from a stored reduced sum (coordinator restart)."""
        agg = cls(configs, model_length)
        agg._vect = total.vect.copy()
        agg._unit = total.unit
        agg.nb_models = nb_models
        return agg

    # -- unmasking (MASKING.md §8, §6.1) --------------------------------------------------
    def validate_mask(self, mask: MaskObject) -> None:
        vect, unit = self.configs.vect, self.configs.unit
        if self.nb_models == 0:
            raise NoModelError("no masked model was aggregated this round")
        if self.nb_models > vect.max_models or self.nb_models > unit.max_models:
            raise TooManyModelsError(f"{self.nb_models} models exceed the model type's limit")
        if mask.vect_config != vect or len(mask.vect) != self.model_length:
            raise ConfigMismatchError(
                f"the mask ({mask.vect_config}, {len(mask.vect)} elements) does not match the "
                f"aggregate ({vect}, {self.model_length} elements)"
            )
        if mask.unit_config != unit:
            raise ConfigMismatchError(f"the mask's unit config {mask.unit_config} is not {unit}")
        check_below(mask.vect, vect.order, "the mask")
        if mask.unit >= unit.order:
            raise ConfigMismatchError(f"the mask's unit element is not below the order {unit.order}")

    def unmask(self, mask: MaskObject) -> GlobalModel:
        """The global model: Σ s'_i·w_i / Σ s'_i as exact reduced rationals."""
        self.validate_mask(mask)
        total = self.masked_sum()
        vect, unit = self.configs.vect, self.configs.unit
        n = self.nb_models
        diff_vect = sub_mod(total.vect, mask.vect, vect.order)
        diff_unit = (total.unit - mask.unit) % unit.order
        # w_i = (D_i - n·A_v·E_v)·E_u / ((D_u - n·A_u·E_u)·E_v)
        scalar_num = diff_unit - n * unit.shift_product
        if scalar_num == 0:
            raise ZeroScalarSumError(
                "every participant's scalar was 0 (or below the encoding's precision): "
                "the weighted mean is undefined, the round fails"
            )
        denominator = scalar_num * vect.exp_shift
        factor = unit.exp_shift
        offset = n * vect.shift_product
        fast = not self._wide and factor == vect.exp_shift and abs(scalar_num) < 2**62 and offset < 2**62
        if fast:
            numerators = diff_vect.astype(np.int64) - np.int64(offset)
            return GlobalModel.from_fractions(numerators, scalar_num)
        numerators = (diff_vect.astype(object) - offset) * factor
        return GlobalModel.from_fractions(numerators, denominator)
