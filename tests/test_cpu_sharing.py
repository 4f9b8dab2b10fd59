"""The CLI makes OpenMP threads wait passively, set before torch loads (OpenMP reads it only then),
and leaves a policy the user chose alone."""

from __future__ import annotations

import os
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
