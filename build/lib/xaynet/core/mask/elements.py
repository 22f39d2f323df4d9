"""Arrays of group elements and their fixed-width little-endian byte form.

Two representations, chosen by the configuration's element width:

* `uint64` numpy arrays when every element fits 8 bytes (the common configs, including the
  default Prime/F32/B0/M3). All work is vectorised numpy.
* numpy `object` arrays of Python ints for wider orders (up to 2143 bits for F64/Bmax).
  Still vectorised (numpy loops over Python ints in C), just slower: correctness first.

Element width `bpn` is what MaskObjects use on the wire (MASKING.md §5).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from xaynet.core.errors import ElementRangeError, LengthError

Elements = npt.NDArray[Any]
"""A 1-d array of group elements: dtype uint64, or dtype object holding Python ints."""

_U64 = np.dtype("<u8")
_MASK64 = (1 << 64) - 1


def decode_elements(
    buf: bytes | bytearray | memoryview, offset: int, count: int, width: int, wide: bool
) -> Elements:
    """Read `count` elements of `width` bytes each starting at `buf[offset]`.

    `wide` selects the object representation. The caller has checked that the bytes exist.
    """
    size = count * width
    if offset + size > len(buf):
        raise LengthError(f"{count} elements of {width} bytes need {size} bytes, buffer too short")
    if not wide:
        return _decode_uint64(buf, offset, count, width)
    return _decode_wide(buf, offset, count, width)


def _decode_uint64(buf: bytes | bytearray | memoryview, offset: int, count: int, width: int) -> Elements:
    if width == 8:
        return np.frombuffer(buf, dtype=_U64, count=count, offset=offset).astype(np.uint64)
    base = np.frombuffer(buf, dtype=np.uint8)
    if offset + count * width + (8 - width) <= len(buf):
        # Overlapping unaligned 8-byte reads at a stride of `width`, then drop the bytes that
        # belong to the next element: one pass over the data, no padding copy. Safe because
        # the buffer extends at least 8 - width bytes past the last element.
        view: Elements = np.ndarray(shape=(count,), dtype=_U64, buffer=base, offset=offset, strides=(width,))
        return view & np.uint64((1 << (8 * width)) - 1)
    padded = np.zeros((count, 8), dtype=np.uint8)
    padded[:, :width] = base[offset : offset + count * width].reshape(count, width)
    return padded.view(_U64).reshape(count).astype(np.uint64)


def _decode_wide(buf: bytes | bytearray | memoryview, offset: int, count: int, width: int) -> Elements:
    limbs = (width + 7) // 8
    padded = np.zeros((count, limbs * 8), dtype=np.uint8)
    raw = np.frombuffer(buf, dtype=np.uint8, count=count * width, offset=offset)
    padded[:, :width] = raw.reshape(count, width)
    words = padded.view(_U64).reshape(count, limbs)
    result: Elements = words[:, 0].astype(object)
    for j in range(1, limbs):
        result = result + (words[:, j].astype(object) << (64 * j))
    return result


def encode_elements(elements: Elements, width: int) -> bytes:
    """The fixed-width little-endian bytes of `elements` (each must be < 2**(8*width))."""
    count = len(elements)
    if elements.dtype != object:
        rows = elements.astype(_U64, copy=False).view(np.uint8).reshape(count, 8)
        return rows[:, :width].tobytes() if width < 8 else rows.tobytes()
    limbs = (width + 7) // 8
    words = np.empty((count, limbs), dtype=_U64)
    for j in range(limbs):
        words[:, j] = ((elements >> (64 * j)) & _MASK64).astype(np.uint64)
    return words.view(np.uint8).reshape(count, limbs * 8)[:, :width].tobytes()


def encode_element(value: int, width: int) -> bytes:
    return value.to_bytes(width, "little")


def check_below(elements: Elements, order: int, what: str) -> None:
    """Raise unless every element is < order (one vectorised reduction)."""
    if len(elements) == 0:
        return
    largest = int(elements.max())
    if largest >= order:
        raise ElementRangeError(f"{what} holds an element {largest} that is not below the order {order}")


def zeros(count: int, wide: bool) -> Elements:
    if wide:
        result = np.empty(count, dtype=object)
        result[:] = 0
        return result
    return np.zeros(count, dtype=np.uint64)


def from_ints(values: list[int] | Elements, wide: bool) -> Elements:
    """Build an element array from Python ints (for tests and small inputs)."""
    if wide:
        result = np.empty(len(values), dtype=object)
        result[:] = [int(v) for v in values]
        return result
    return np.asarray(values, dtype=np.uint64)
