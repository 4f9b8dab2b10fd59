"""The CLI makes OpenMP threads wait passively, set before torch loads (OpenMP reads it only then),
and leaves a policy the user chose alone; it keeps freed memory in the heap unless the user tuned
malloc; it leaves cores other processes keep busy to them unless a thread count was chosen."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from unetkit.cli import cpu
from unetkit.cli.cpu import WAIT_POLICY

# Records OMP_WAIT_POLICY at the moment torch is first imported, then runs a subcommand that loads torch.
SPY = """
import os, sys
seen = []
class Spy:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.append(os.environ.get("OMP_WAIT_POLICY"))
sys.meta_path.insert(0, Spy())
from unetkit.cli import main
main(["-q", "data", "inspect", sys.argv[1]])
print(seen)
"""


@pytest.mark.parametrize(("user_policy", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_the_wait_policy_is_set_before_torch_loads_unless_the_user_chose_one(tmp_path, user_policy, expected):
    env = {name: value for name, value in os.environ.items() if name != WAIT_POLICY}
    if user_policy:
        env[WAIT_POLICY] = user_policy
    result = subprocess.run([sys.executable, "-c", SPY, str(tmp_path)], env=env, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == repr([expected])


# Allocates a 256 MB tensor in a fresh process, frees it, and prints glibc's counts: blocks mapped
# from the kernel for it (hblks), and heap bytes still held after the free (arena).
MALLOC_SPY = """
import ctypes, json, sys
from unetkit.cli.cpu import reuse_freed_memory
set_up = reuse_freed_memory()
import torch

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
before = libc.mallinfo2().hblks
tensor = torch.ones(64 * 2**20)
mapped = libc.mallinfo2().hblks - before
del tensor
print(json.dumps({"set_up": set_up, "mapped_blocks": mapped, "heap_mb_after_free": libc.mallinfo2().arena / 2**20}))
"""


def _malloc_spy(**env: str) -> dict:
    clean = {name: value for name, value in os.environ.items() if not name.startswith("MALLOC_") and name != "LD_PRELOAD"}
    result = subprocess.run([sys.executable, "-c", MALLOC_SPY], env={**clean, **env}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


# Stays a skip under $UNETKIT_REQUIRE_ALL (required.py): mallopt exists only in glibc (not macOS, musl).
glibc_only = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")


@glibc_only
def test_large_blocks_come_from_the_heap_and_stay_there_when_freed():
    seen = _malloc_spy()
    assert seen["set_up"] is True
    assert seen["mapped_blocks"] == 0
    assert seen["heap_mb_after_free"] >= 256


@glibc_only
def test_a_user_who_tuned_malloc_keeps_glibcs_behaviour():
    seen = _malloc_spy(MALLOC_MMAP_MAX_="65536")
    assert seen["set_up"] is False
    assert seen["mapped_blocks"] >= 1


def sample(busy: int, total: int, own: float, wall: float) -> cpu.CpuSample:
    return cpu.CpuSample(busy, total, own, wall)


def test_cores_busy_elsewhere_subtract_this_process():
    start, end = sample(0, 0, 0.0, 0.0), sample(150, 200, 1.0, 2.0)  # 2 cores, 2 s: 3 core-seconds busy
    assert cpu.cores_busy_elsewhere(start, end, cores=2) == pytest.approx(1.5 - 0.5)


def test_a_window_too_short_to_tell_changes_nothing():
    assert cpu.cores_busy_elsewhere(sample(0, 0, 0.0, 0.0), sample(10, 20, 0.0, 0.1), cores=2) is None


@pytest.mark.parametrize(
    ("busy", "cores", "threads", "expected"),
    [(0.1, 2, 2, 2), (1.2, 2, 2, 1), (2.0, 2, 2, 1), (3.0, 16, 16, 13), (0.0, 8, 4, 4)],
)
def test_threads_leave_the_busy_cores_but_never_exceed_torchs_nor_fall_below_one(busy, cores, threads, expected):
    assert cpu.threads_beside(busy, cores, threads) == expected


def test_a_chosen_thread_count_is_left_alone(monkeypatch):
    import torch

    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setattr(cpu, "sample_cpu", lambda: sample(400, 400, 0.0, 10.0))  # every core busy elsewhere
    before = torch.get_num_threads()
    cpu.leave_busy_cores(sample(0, 0, 0.0, 0.0))
    assert torch.get_num_threads() == before


def test_busy_cores_lower_torchs_threads(monkeypatch):
    import torch

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setattr(cpu.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(cpu.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(cpu, "sample_cpu", lambda: sample(400, 400, 0.0, 2.0))  # both cores busy elsewhere
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cpu.leave_busy_cores(sample(0, 0, 0.0, 0.0))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
