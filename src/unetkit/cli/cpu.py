"""How unetkit's processes share a CPU with other jobs. Set up before torch is imported: OpenMP
reads its environment once, when torch loads it.

OpenMP threads that wait at a barrier spin by default; beside another torch job on the same cores
the two jobs' spinning threads take each other's time slices, and a 2x fair-share slowdown becomes
6x (benchmarks/contention.py). Passive waiting (sleeping at barriers) keeps it near fair share;
a thread count fixed to the cores free at the start measured no better on top of it.

glibc hands every freed block over 32 MB back to the kernel, so each forward pass over large tiles
faults its activations in afresh: a third of ``predict``'s CPU time went to the kernel
(benchmarks/allocator.py). The CLI keeps freed memory in the process's heap instead.
"""

from __future__ import annotations

import ctypes
import os
import platform

WAIT_POLICY = "OMP_WAIT_POLICY"
# mallopt parameters (malloc.h); an int value caps the trim threshold at 2 GiB.
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
KEEP_UP_TO_BYTES = 2**31 - 1


def wait_passively() -> None:
    """OpenMP threads sleep at barriers instead of spinning, unless the user chose a policy."""
    os.environ.setdefault(WAIT_POLICY, "PASSIVE")


def reuse_freed_memory() -> bool:
    """Large blocks come from the heap and stay there when freed (glibc only), unless the user tuned
    malloc (any ``MALLOC_*`` variable) or preloaded another allocator. True when set."""
    if "LD_PRELOAD" in os.environ or any(name.startswith("MALLOC_") for name in os.environ):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL("libc.so.6")
    # Trim first: disabling mmap alone would still give the heap's freed top back to the kernel.
    return bool(libc.mallopt(M_TRIM_THRESHOLD, KEEP_UP_TO_BYTES) and libc.mallopt(M_MMAP_MAX, 0))
