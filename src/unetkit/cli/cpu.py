"""How unetkit's processes share a CPU with other jobs. Set up before torch is imported: OpenMP
reads its environment once, when torch loads it.

OpenMP threads that wait at a barrier spin by default; beside another torch job on the same cores
the two jobs' spinning threads take each other's time slices, and a 2x fair-share slowdown becomes
6x (benchmarks/contention.py). Passive waiting (sleeping at barriers) keeps it near fair share;
a thread count fixed to the cores free at the start measured no better on top of it.
"""

from __future__ import annotations

import os

WAIT_POLICY = "OMP_WAIT_POLICY"


def wait_passively() -> None:
    """OpenMP threads sleep at barriers instead of spinning, unless the user chose a policy."""
    os.environ.setdefault(WAIT_POLICY, "PASSIVE")
