"""How unetkit's processes share a CPU with other jobs. Set up before torch is imported: OpenMP
reads its environment once, when torch loads it.

OpenMP threads that wait at a barrier spin by default; beside another torch job on the same cores
the two jobs' spinning threads take each other's time slices, and a 2x fair-share slowdown becomes
6x (benchmarks/contention.py). Passive waiting (sleeping at barriers) keeps it near fair share for
networks of few large operations. Networks of many small ones still wait at every barrier for a
thread the other job has preempted: training steps ran 4x slower beside a torch job. So the CLI
also leaves cores that other processes kept busy while it started (torch's import) to them.

glibc hands every freed block over 32 MB back to the kernel, so each forward pass over large tiles
faults its activations in afresh: a third of ``predict``'s CPU time went to the kernel
(benchmarks/allocator.py). The CLI keeps freed memory in the process's heap instead.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import time
from typing import NamedTuple

log = logging.getLogger(__name__)

WAIT_POLICY = "OMP_WAIT_POLICY"
# mallopt parameters (malloc.h); an int value caps the trim threshold at 2 GiB.
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
KEEP_UP_TO_BYTES = 2**31 - 1
# Variables through which the user (or torchrun) already chose a thread count.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
MIN_SAMPLE_SECONDS = 0.5  # shorter windows (torch already imported) say too little to act on


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


class CpuSample(NamedTuple):
    busy_ticks: int  # all CPUs, from /proc/stat
    total_ticks: int
    own_seconds: float  # this process's CPU time
    wall: float


def sample_cpu() -> CpuSample | None:
    """The machine's CPU ticks and this process's CPU time now (Linux); None elsewhere."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(field) for field in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    times = os.times()
    return CpuSample(sum(ticks) - idle, sum(ticks), times.user + times.system, time.perf_counter())


def cores_busy_elsewhere(start: CpuSample, end: CpuSample, cores: int) -> float | None:
    """Cores other processes kept busy between the samples; None for a window too short to tell."""
    wall = end.wall - start.wall
    if wall < MIN_SAMPLE_SECONDS or end.total_ticks <= start.total_ticks:
        return None
    busy_share = (end.busy_ticks - start.busy_ticks) / (end.total_ticks - start.total_ticks)
    return max(0.0, busy_share * cores - (end.own_seconds - start.own_seconds) / wall)


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the OS tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def threads_beside(busy_elsewhere: float, cores: int, threads: int) -> int:
    """The thread count that leaves others' busy cores to them: never more than ``threads``, at least 1."""
    return max(1, min(threads, round(cores - busy_elsewhere)))


def leave_busy_cores(start: CpuSample | None) -> None:
    """Lower torch's thread count to the cores not busy elsewhere since ``start``, unless a thread
    count was chosen (``--threads``, ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``)."""
    end = sample_cpu()
    if start is None or end is None or any(name in os.environ for name in THREAD_VARIABLES):
        return
    import torch

    cores = usable_cores()
    busy = cores_busy_elsewhere(start, end, os.cpu_count() or cores)
    if busy is None:
        return
    threads = threads_beside(busy, cores, torch.get_num_threads())
    if threads < torch.get_num_threads():
        log.info("threads: %d of %d (other processes kept %.1f cores busy at start; --threads N sets it)",
                 threads, torch.get_num_threads(), busy)  # fmt: skip
        torch.set_num_threads(threads)
