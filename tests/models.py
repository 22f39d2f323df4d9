"""Models that say who sent them, and the exact check of a global model built from them.

Participant i trains `head` values derived from i, then a one-hot tail of `total` entries
with a 1 at i. In a global model the tail reads 1/n at the n participants it aggregated,
which names them; the head must then be exactly the mean of their (quantised) heads.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from xaynet.core.mask.model import GlobalModel


def local_model(index: int, head: int, total: int) -> list[float]:
    values = [((index * 7 + j * 3) % 11 - 5) / 8 for j in range(head)]
    return values + [1.0 if j == index else 0.0 for j in range(total)]


def quantised(weight: float) -> Fraction:
    """What one F32/B0 model contributes after encoding: floored to 1e-10 (MASKING.md §6.3)."""
    exact = Fraction(float(np.float32(weight)))
    return Fraction(math.floor((exact + 1) * 10**10), 10**10) - 1


def check_global_model(model: GlobalModel, head: int, total: int) -> set[int]:
    """Assert the model is the plain mean of exactly the participants its tail names."""
    values = model.as_fractions()
    tail = values[head:]
    included = {i for i, share in enumerate(tail) if share != 0}
    assert len(included) >= 3, f"a round needs at least 3 updates, the tail says {tail}"
    assert all(tail[i] == Fraction(1, len(included)) for i in included), tail
    for j in range(head):
        expected = sum(quantised(local_model(i, head, total)[j]) for i in included) / len(included)
        assert values[j] == expected, (j, values[j], expected)
    return included
