"""Handing freed memory back to the system after large requests.

The CLI keeps freed memory in the process's heap (``cli/cpu.py``: forward passes then need not fault
their activations in again), and glibc keeps what each worker thread freed in that thread's arena:
a server whose requests decoded a few big images kept their peak while idle. ``malloc_trim(0)``
returns the free pages of every arena to the system, whatever the trim threshold; the server calls
it when a request that decoded ``TRIM_AFTER_BYTES`` or more ends. Where there is no glibc (macOS,
musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

TRIM_AFTER_BYTES = 8 * 2**20


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return free heap pages to the system; False where the C library cannot (no glibc)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
