"""The fused rejection-sampling kernel of mask derivation, compiled by numba when installed.

Mask derivation is keystream-bound (MASKING.md §4: about 14 attempts per element for the
default config), and numpy needs separate passes over every chunk of keystream (view, mask
the high bits, compare, fancy-index) that together cost about as much as ChaCha20 itself.
This kernel does all of it in one pass per chunk, in a loop numba compiles to machine code.

numba is an optional dependency (the `fast` extra): `load()` returns None when it is missing
or cannot compile, and the caller keeps the numpy path, which gives the same bytes. numba is
imported on the first derivation, not with this module, so processes that never derive a
mask (the coordinator) do not pay for it; `cache=True` keeps the compiled code on disk
(numba's own cache, like `.pyc` files) so later processes skip the compilation.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

Words = npt.NDArray[np.uint64]
Kernel = Callable[[Words, np.uint64, np.uint64, Words, int, int, bool], tuple[int, int]]
"""`kernel(words, keep, order, out, start, stop, add) -> (next_out, words_used)`: `_accept`."""

_BLOCK = 64  # attempts per block: one bit each in a 64-bit acceptance mask


def _python_trailing_zeros(bits: Any) -> int:
    return (int(bits) & -int(bits)).bit_length() - 1


trailing_zeros: Any = _python_trailing_zeros
"""Index of the lowest set bit; `load()` puts numba's `cttz` intrinsic here before compiling."""


def _accept(  # noqa: PLR0917 - numba compiles no keyword-only parameters
    words: Words, keep: np.uint64, order: np.uint64, out: Words, start: int, stop: int, add: bool
) -> Any:
    """Keep attempts `w & keep` that are < order, for `out[start:stop]` in order.

    They are written there or, with `add`, added there: Sum2 adds each mask into its running
    sum as it is drawn (no mask array, no second pass; the caller reduces in time). Returns
    the next index of `out` and how many attempts were used: all of `words` unless `stop`
    was reached, in which case the caller gives the rest back to the keystream.
    For each block of 64 attempts a branch-free loop (which the compiler vectorises) sets
    one bit per accepted attempt; then only the accepted ones (1 in 14 for the default
    config) are visited, lowest bit first. A block runs only while it cannot overrun `stop`;
    the last attempts go one at a time. Unsigned counters spare numba the negative-index
    check on every access.
    """
    zero, one = np.uint64(0), np.uint64(1)
    block = np.uint64(_BLOCK)
    n = np.uint64(words.shape[0])
    end = np.uint64(stop)
    pos = np.uint64(start)
    i = np.uint64(0)
    while i + block <= n and pos + block <= end:
        bits = zero
        for k in range(_BLOCK):
            bits |= np.uint64((words[i + np.uint64(k)] & keep) < order) << np.uint64(k)
        while bits != zero:
            value = words[i + np.uint64(trailing_zeros(bits))] & keep
            if add:
                out[pos] += value
            else:
                out[pos] = value
            pos += one
            bits &= bits - one
        i += block
    while i < n and pos < end:
        value = words[i] & keep
        i += one
        if value < order:
            if add:
                out[pos] += value
            else:
                out[pos] = value
            pos += one
    return int(pos), int(i)


@functools.cache
def load() -> Kernel | None:
    """The compiled kernel, or None (numba missing, or unusable here): use the numpy path."""
    if sys.byteorder != "little":  # the keystream is read as little-endian words in place
        return None
    global trailing_zeros  # noqa: PLW0603 - set once, before the kernel is compiled
    try:
        import numba  # noqa: PLC0415 - optional and slow to import: only when first needed
        from numba.cpython.unsafe.numbers import trailing_zeros as cttz  # noqa: PLC0415
    except ImportError:
        return None
    trailing_zeros = cttz
    try:
        compiled = numba.njit(cache=True, nogil=True)(_accept)
    except RuntimeError:  # no writable cache location for this file: compile per process
        compiled = numba.njit(nogil=True)(_accept)
    kernel: Kernel = compiled
    # Compile (or load from the cache) now, for the one signature derivation uses, and give
    # up on the kernel rather than on the derivation if this numba cannot compile it.
    probe, out = np.arange(200, dtype=np.uint64), np.ones(100, dtype=np.uint64)
    try:
        accepted = kernel(probe, np.uint64(0xFF), np.uint64(150), out, 0, 100, True)
    except Exception:  # numba reports compilation problems with many exception types
        return None
    return kernel if accepted == (100, 100) and out.tolist() == list(range(1, 101)) else None
