"""Mask derivation: a 32-byte seed becomes a MaskObject, bit-identical to the Rust SDK.

The original draws each element with rejection sampling from a ChaCha20 keystream
(MASKING.md §4): an attempt takes `draw_bytes(q)` bytes but consumes whole 32-bit words, is
read little-endian without masking high bits, and is rejected when >= q. One unit element
is drawn first, then the model's elements in order. Wire compatibility forbids a cheaper
scheme (an original sum participant must derive the same mask from our seed), so the job
is to make this one fast: the keystream comes from `cryptography` (OpenSSL ChaCha20) in
cache-sized chunks, and each chunk is filtered in one pass by the compiled kernel of
`kernel.py` (numba, the `fast` extra) or, without it, by numpy's separate passes. Both paths
give the same bytes (tests/core/test_mask_kernel.py).
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from xaynet.core.errors import LengthError
from xaynet.core.mask import kernel as compiled_kernel
from xaynet.core.mask.config import MaskConfig, MaskConfigPair
from xaynet.core.mask.elements import Elements, decode_elements
from xaynet.core.mask.object import MaskObject

SEED_LENGTH = 32
_CHUNK_BYTES = 1 << 21  # keystream generated per numpy step: fits in cache, bounds memory
_KERNEL_CHUNK_BYTES = 1 << 19  # per kernel step: read back from L2 (half of one core's)
_ZEROS = bytes(_CHUNK_BYTES)


class _Scratch(threading.local):
    """Per-thread buffers reused across derivations: fresh multi-MB allocations page-fault."""

    def __init__(self) -> None:
        self.keystream = bytearray(_CHUNK_BYTES)
        self.words = np.empty(_CHUNK_BYTES // 4, dtype=np.uint64)
        self.below = np.empty(_CHUNK_BYTES // 4, dtype=bool)


_SCRATCH = _Scratch()


class Keystream:
    """The ChaCha20 keystream of rand_chacha's `ChaCha20Rng::from_seed(seed)`.

    For the first 2^32 blocks it equals RFC 8439 ChaCha20 with a zero nonce and counter 0;
    `cryptography` takes a 16-byte nonce whose first 4 bytes are that counter. Bytes handed
    back with `unread` are returned again by the next `read`, so callers can consume exactly
    as much as the original does. `read_chunk` fills a reused, writable buffer (no page
    faults from fresh allocations); its result is only valid until the next call.
    """

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_LENGTH:
            raise LengthError(f"a mask seed has {SEED_LENGTH} bytes, got {len(seed)}")
        cipher = Cipher(algorithms.ChaCha20(bytes(seed), bytes(16)), mode=None)
        self._encryptor = cipher.encryptor()
        self._pending = b""
        self.consumed = 0

    def read(self, size: int) -> bytes:
        return bytes(self.read_chunk(size))

    def read_chunk(self, size: int) -> memoryview:
        out = _SCRATCH.keystream if size <= _CHUNK_BYTES else bytearray(size)
        view = memoryview(out)[:size]
        given = min(size, len(self._pending))
        if given:
            view[:given] = self._pending[:given]
            self._pending = self._pending[given:]
        fresh = size - given
        if fresh:
            zeros = memoryview(_ZEROS)[:fresh] if fresh <= _CHUNK_BYTES else memoryview(bytes(fresh))
            self._encryptor.update_into(zeros, view[given:])
        self.consumed += size
        return view

    def unread(self, data: bytes | memoryview) -> None:
        self._pending = bytes(data) + self._pending
        self.consumed -= len(data)


def _word_stride(draw: int) -> int:
    """Bytes one attempt consumes: whole 32-bit words."""
    return 4 * ((draw + 3) // 4)


def _accepted(chunk: memoryview, order: int, draw: int, stride: int, wide: bool) -> tuple[Elements, Elements]:
    """Attempts in `chunk` that are < order: their values, and the acceptance mask."""
    attempts = len(chunk) // stride
    if draw <= 8:
        dtype = np.dtype("<u4") if stride == 4 else np.dtype("<u8")
        values: npt.NDArray[np.unsignedinteger[Any]] = np.frombuffer(chunk, dtype=dtype, count=attempts)
        scratch = stride == 8 and attempts <= len(_SCRATCH.words)
        if draw < stride:
            out = _SCRATCH.words[:attempts] if scratch else None
            values = np.bitwise_and(values, (1 << (8 * draw)) - 1, dtype=dtype, out=out)
        below = np.less(values, order, out=_SCRATCH.below[:attempts] if scratch else None)
        picked = values[below].astype(np.uint64, copy=False)
        return (picked.astype(object) if wide else picked), below
    rows = np.frombuffer(chunk, dtype=np.uint8, count=attempts * stride).reshape(attempts, stride)
    shift = 8 * (draw - 8)
    top = np.ascontiguousarray(rows[:, draw - 8 : draw]).view("<u8").reshape(attempts)
    order_top = np.uint64(order >> shift)
    below = top < order_top
    for i in np.flatnonzero(top == order_top):  # rare ties: compare exactly
        below[i] = int.from_bytes(rows[i, :draw].tobytes(), "little") < order
    raw = np.ascontiguousarray(rows[below, :draw]).tobytes()
    return decode_elements(raw, 0, int(below.sum()), draw, wide=True), below


def _acceptance(order: int, draw: int) -> float:
    """Probability that one attempt is accepted: order / 2^(8·draw), safe for huge orders."""
    bits = 8 * draw
    if bits <= 60:
        return order / float(1 << bits)
    return (order >> (bits - 60)) / float(1 << 60)


def draw_elements(stream: Keystream, config: MaskConfig, count: int, *, compiled: bool = True) -> Elements:
    """Draw `count` uniform elements below `config.order`, consuming exactly what Rust does.

    `compiled=False` forces the numpy path (the compiled one is used when numba is installed
    and the elements fit uint64).
    """
    kernel = compiled_kernel.load() if compiled and config.fits_uint64 and count > 0 else None
    if kernel is not None:
        return _draw_compiled(stream, config, count, kernel)
    return _draw_numpy(stream, config, count)


def _attempts_for(missing: int, acceptance: float, stride: int, chunk_bytes: int) -> int:
    """Attempts to read for `missing` elements: a little more than expected, at most a chunk."""
    return min(max(16, math.ceil(missing / acceptance * 1.02) + 8), max(1, chunk_bytes // stride))


def _draw_compiled(
    stream: Keystream, config: MaskConfig, count: int, kernel: compiled_kernel.Kernel
) -> Elements:
    out = np.empty(count, dtype=np.uint64)
    _run_kernel(stream, config, out, kernel, add=False)
    return out


def add_drawn_elements(
    stream: Keystream, config: MaskConfig, total: Elements, kernel: compiled_kernel.Kernel
) -> None:
    """Draw `len(total)` elements like `draw_elements` and add them into `total` in place.

    For Sum2 (`masksum.py`); the caller keeps the uint64 `total` from overflowing.
    """
    _run_kernel(stream, config, total, kernel, add=True)


def _run_kernel(
    stream: Keystream, config: MaskConfig, out: Elements, kernel: compiled_kernel.Kernel, *, add: bool
) -> None:
    """The kernel filters each chunk in one pass; the unused rest goes back to the stream.

    Only for configs whose elements fit uint64: their orders are >= 2^44, so an attempt is
    6 to 8 bytes and always consumes one 8-byte word.
    """
    if not config.fits_uint64:
        raise ValueError(f"the compiled kernel draws uint64 elements; {config} needs wider ones")
    order, draw, count = config.order, config.draw_bytes, len(out)
    keep = np.uint64((1 << (8 * draw)) - 1)
    acceptance = _acceptance(order, draw)
    filled = 0
    while filled < count:
        attempts = _attempts_for(count - filled, acceptance, 8, _KERNEL_CHUNK_BYTES)
        chunk = stream.read_chunk(attempts * 8)
        words = np.frombuffer(chunk, dtype=np.uint64, count=attempts)
        filled, used = kernel(words, keep, np.uint64(order), out, filled, count, add)
        if used < attempts:
            stream.unread(chunk[used * 8 :])


def _draw_numpy(stream: Keystream, config: MaskConfig, count: int) -> Elements:
    """numpy's passes per chunk (view, mask, compare, index); any config, incl. wide ones."""
    order, draw = config.order, config.draw_bytes
    stride = _word_stride(draw)
    wide = not config.fits_uint64
    acceptance = _acceptance(order, draw)
    parts: list[Elements] = []
    missing = count
    while missing > 0:
        attempts = _attempts_for(missing, acceptance, stride, _CHUNK_BYTES)
        chunk = stream.read_chunk(attempts * stride)
        values, below = _accepted(chunk, order, draw, stride, wide)
        if len(values) >= missing:
            # Give back the keystream after the last attempt we use, so the next draw (with
            # possibly another config, whose acceptance differs) starts exactly where the
            # original's would.
            used = (int(np.flatnonzero(below)[missing - 1]) + 1) * stride
            if used < len(chunk):
                stream.unread(chunk[used:])
            values = values[:missing]
        parts.append(values)
        missing -= len(values)
    if not parts:
        return np.zeros(0, dtype=object if wide else np.uint64)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def derive_mask(seed: bytes, configs: MaskConfigPair, length: int, *, compiled: bool = True) -> MaskObject:
    """The mask a seed stands for: one unit element first, then `length` vector elements.

    `compiled=False` forces the numpy path (tests compare the two).
    """
    stream = Keystream(seed)
    unit = int(draw_elements(stream, configs.unit, 1, compiled=compiled)[0])
    vect = draw_elements(stream, configs.vect, length, compiled=compiled)
    return MaskObject(configs.vect, vect, configs.unit, unit)
