"""Give memory freed between batches back to the system, so a load's peak stays flat.

pyarrow's default allocator (mimalloc) and glibc's malloc both keep freed memory for
reuse. A vector load frees a batch's Arrow buffers and shapely geometries after writing
them; without handing that memory back, the process keeps the high-water mark of the
largest mixture of cached and live buffers, which grew with the input
(docs/bench-ingestperf.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable

import pyarrow as pa


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """Glibc's ``malloc_trim``, or None (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    return trim


def release_unused() -> None:
    """Return what Arrow's pool and malloc hold unused to the operating system."""
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
