"""How unetkit's processes share a CPU with other jobs. Set up before torch is imported: OpenMP
reads its environment once, when torch loads it.

OpenMP threads that wait at a barrier spin by default; beside another torch job on the same cores
the two jobs' spinning threads take each other's time slices, and a 2x fair-share slowdown becomes
6x (benchmarks/contention.py). Passive waiting (sleeping at barriers) keeps it near fair share.
"""

from __future__ import annotations

import os
import time

WAIT_POLICY = "OMP_WAIT_POLICY"


def wait_passively() -> None:
    """OpenMP threads sleep at barriers instead of spinning, unless the user chose a policy."""
    os.environ.setdefault(WAIT_POLICY, "PASSIVE")


def free_cores(sample_seconds: float = 0.1) -> int:
    """Cores of this process's CPU set not busy with other work, over ``sample_seconds`` (>= 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    before = _busy_and_total_ticks()
    time.sleep(sample_seconds)
    after = _busy_and_total_ticks()
    if before is None or after is None or after[1] <= before[1]:
        return cores
    busy_share = (after[0] - before[0]) / (after[1] - before[1])
    machine_cores = os.cpu_count() or cores
    return max(1, min(cores, round(machine_cores * (1 - busy_share))))


def _busy_and_total_ticks() -> tuple[int, int] | None:
    """All CPUs' busy and total ticks from /proc/stat (Linux); None elsewhere."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(field) for field in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return sum(ticks) - idle, sum(ticks)
