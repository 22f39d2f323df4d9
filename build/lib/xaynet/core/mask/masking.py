"""Masking one local model: encode, derive the mask from a fresh seed, add mod q."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from nacl.utils import random as random_bytes

from xaynet.core.mask.codec import encode_scalar, encode_weights
from xaynet.core.mask.config import MaskConfigPair
from xaynet.core.mask.elements import Elements
from xaynet.core.mask.object import MaskObject
from xaynet.core.mask.prng import SEED_LENGTH, derive_mask


def add_mod(a: Elements, b: Elements, order: int) -> Elements:
    """(a + b) mod q for reduced inputs; no overflow since every uint64 order is < 2^63."""
    if object in (a.dtype, b.dtype):
        return np.asarray((a.astype(object) + b.astype(object)) % order)
    total = a + b
    np.subtract(total, np.uint64(order), out=total, where=total >= np.uint64(order))
    return total


def sub_mod(a: Elements, b: Elements, order: int) -> Elements:
    """(a - b) mod q for reduced inputs."""
    if object in (a.dtype, b.dtype):
        return np.asarray((a.astype(object) - b.astype(object)) % order)
    total = a + (np.uint64(order) - b)
    np.subtract(total, np.uint64(order), out=total, where=total >= np.uint64(order))
    return total


def mask_model(
    weights: npt.NDArray[Any], scalar: float, configs: MaskConfigPair, seed: bytes | None = None
) -> tuple[MaskObject, bytes]:
    """Mask `weights` (already in the round's numpy type) with a fresh or given seed.

    Returns the masked object to send and the seed to share with the sum participants.
    """
    seed = random_bytes(SEED_LENGTH) if seed is None else seed
    mask = derive_mask(seed, configs, len(weights))
    encoded = encode_weights(weights, scalar, configs.vect)
    vect = add_mod(encoded, mask.vect, configs.vect.order)
    unit = (encode_scalar(scalar, configs.unit) + mask.unit) % configs.unit.order
    return MaskObject(configs.vect, vect, configs.unit, unit), seed
