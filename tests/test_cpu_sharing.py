"""The CLI makes OpenMP threads wait passively, set before torch loads (OpenMP reads it only then),
and leaves a policy the user chose alone; it keeps freed memory in the heap unless the user tuned
malloc."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

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
