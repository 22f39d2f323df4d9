"""Keep the memory of finished messages mapped, instead of handing it back to the kernel.

Every large POST body (an update: 0.6 MB at 100,000 weights) passes through a few buffers of
its size: the socket reads, aiohttp's body, the opened plaintext, the parsed model. glibc's
malloc serves blocks above its mmap threshold with fresh mappings and gives a freed heap top
above its trim threshold back to the kernel, so each message faulted its buffers in again:
~200 page faults per 100k update, a sixth of the coordinator's CPU per update
(`python -m benchmarks chunks`). Raising the mmap threshold to its maximum and the trim
threshold to a few messages' worth keeps those pages: the extra memory kept is at most the
trim threshold per malloc arena (the event loop's and the opening threads').

glibc only (mallopt); elsewhere (musl) nothing changes and the cost stays.
"""

from __future__ import annotations

import ctypes
import platform

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest (64-bit): bigger blocks are always mapped
MIN_TRIM_THRESHOLD = 16 * 1024 * 1024
MAX_TRIM_THRESHOLD = 256 * 1024 * 1024
BODIES_KEPT = 8  # a few messages in flight, each in a few buffers


def trim_threshold(largest_body: int) -> int:
    """How much freed memory an arena keeps before returning some to the kernel."""
    return max(MIN_TRIM_THRESHOLD, min(MAX_TRIM_THRESHOLD, BODIES_KEPT * largest_body))


def keep_freed_buffers(largest_body: int) -> bool:
    """Tune this process's malloc for message bodies up to `largest_body` bytes.

    Returns whether it applied (False on a C library other than glibc). Process-wide: with
    several coordinators in one process (tests, test-drive) the last one's size counts."""
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover - glibc always has it
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    mapped = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    trimmed = mallopt(_M_TRIM_THRESHOLD, trim_threshold(largest_body))
    return bool(mapped and trimmed)
