"""Sum2's work: the reduced sum of the masks that a sum participant's seeds stand for.

The result equals adding `derive_mask(seed)` for every seed into an `Aggregation` (the wheel's
Sum2 vectors check it), in memory O(length) whatever the number of seeds. With the compiled
kernel each drawn element is added into the running sum where it is drawn, so no mask array
is built per seed and no separate validation and addition passes run over it: the cost stays
close to the keystream's. Without numba, or for configs wider than uint64, it is exactly the
`Aggregation` loop.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from xaynet.core.errors import TooManyModelsError
from xaynet.core.mask import kernel as compiled_kernel
from xaynet.core.mask.aggregate import Aggregation
from xaynet.core.mask.config import MaskConfigPair
from xaynet.core.mask.object import MaskObject
from xaynet.core.mask.prng import Keystream, add_drawn_elements, derive_mask, draw_elements

_U64_MAX = (1 << 64) - 1


def sum_masks(
    seeds: Iterable[bytes], configs: MaskConfigPair, length: int, *, compiled: bool = True
) -> MaskObject:
    """Σ derive_mask(seed) mod q over `seeds`: the masked sum a Sum2 message carries.

    Raises `TooManyModelsError` like `Aggregation` when there are more seeds than the model
    type allows, and `LengthError` for a seed that is not 32 bytes. No seeds: the zero mask.
    """
    vect, unit = configs.vect, configs.unit
    kernel = compiled_kernel.load() if compiled and vect.fits_uint64 else None
    if kernel is None:
        aggregation = Aggregation(configs, length)
        for seed in seeds:
            aggregation.add(derive_mask(seed, configs, length, compiled=compiled))
        return aggregation.masked_sum()

    order = np.uint64(vect.order)
    power2 = vect.order & (vect.order - 1) == 0  # uint64 wrap-around is then harmless
    headroom = _U64_MAX // max(vect.order - 1, 1)  # additions that cannot overflow uint64
    total = np.zeros(length, dtype=np.uint64)
    unit_sum, unreduced = 0, 0
    for count, seed in enumerate(seeds):
        if count >= min(vect.max_models, unit.max_models):
            raise TooManyModelsError(
                f"{count} masks already make up the sum, the most that {vect.model_type.name} allows"
            )
        stream = Keystream(seed)
        unit_sum = (unit_sum + int(draw_elements(stream, unit, 1)[0])) % unit.order
        if not power2 and unreduced + 1 >= headroom:
            np.remainder(total, order, out=total)
            unreduced = 0
        add_drawn_elements(stream, vect, total, kernel)
        unreduced += 1
    if power2:
        np.bitwise_and(total, order - np.uint64(1), out=total)
    else:
        np.remainder(total, order, out=total)
    return MaskObject(vect, total, unit, unit_sum)
