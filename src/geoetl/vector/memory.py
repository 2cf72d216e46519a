"""Give memory freed between batches back to the system, so a load's peak stays flat.

pyarrow's default allocator (mimalloc) and glibc's malloc both keep freed memory for
reuse. A vector load frees a batch's Arrow buffers and shapely geometries after writing
them; without handing that memory back, the process keeps the high-water mark of the
largest mixture of cached and live buffers, which grew with the input
(docs/bench-ingestperf.md).

Handing memory back costs too: the next batch faults every page in again (a third of a
load's system time when done after each batch). So it is done at most every
:data:`INTERVAL` seconds, which bounds what is kept to what a few batches use.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import time
from collections.abc import Callable

import pyarrow as pa

INTERVAL = 0.25  # seconds, at least, between two releases (threads may race: harmless)
_last = [-INTERVAL]


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
    """Return what Arrow's pool and malloc hold unused to the operating system.

    Nothing when this process did so less than :data:`INTERVAL` seconds ago.
    """
    now = time.monotonic()
    if now - _last[0] < INTERVAL:
        return
    _last[0] = now
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
