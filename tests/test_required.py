"""$UNETKIT_REQUIRE_ALL (required.py, set by .ci/run) turns the skips of tests that cannot run here
into failures: the suite's own sample-data and browser tests, run in a child pytest with the sample
data and chromium pointed at folders that do not exist, skip without it and fail with it."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from required import CHROMIUM, REQUIRE_ALL

REPO = Path(__file__).resolve().parents[1]
# One test of each kind: the needs_sample decorator, the real_data fixture, the browser marker.
FILES = ["tests/data/test_dataset.py", "tests/data/test_splits.py", "tests/report/test_report_browser.py"]


def outcomes(tmp_path: Path, require_all: str | None) -> tuple[int, dict[str, tuple[str, str]]]:
    """The child pytest's exit code and, per test, its outcome (passed, skipped, failed, error) and message."""
    report = tmp_path / f"report-{require_all}.xml"
    env = {name: value for name, value in os.environ.items() if name != REQUIRE_ALL}
    env.update(UNETKIT_SAMPLE_DATA=str(tmp_path / "no-samples"), **{CHROMIUM: str(tmp_path / "no-chromium")})
    if require_all is not None:
        env[REQUIRE_ALL] = require_all
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "pytest", *FILES, "-m", "sample_data or browser", "-p", "no:cacheprovider",
               "-q", f"--junitxml={report}"]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    found = {}
    for case in ElementTree.parse(report).iter("testcase"):
        child = next(iter(case), None)
        outcome = "passed" if child is None or child.tag in ("system-out", "system-err") else child.tag
        found[case.get("name")] = (outcome, "" if child is None else child.get("message", ""))
    assert found, result.stdout + result.stderr
    return result.returncode, found


def test_without_the_variable_what_is_missing_skips_with_the_reason(tmp_path: Path) -> None:
    code, found = outcomes(tmp_path, None)
    assert code == 0 and {outcome for outcome, _ in found.values()} == {"skipped"}, found
    reasons = [message for _, message in found.values()]
    assert any(f"no sample data at {tmp_path / 'no-samples'}" in reason for reason in reasons)
    assert any("no chromium found" in reason for reason in reasons)


def test_with_the_variable_what_is_missing_fails_with_the_reason(tmp_path: Path) -> None:
    code, found = outcomes(tmp_path, "1")
    assert code == 1 and "skipped" not in {outcome for outcome, _ in found.values()}, found
    assert {outcome for outcome, _ in found.values()} <= {"failure", "error"}
    assert {name for name, (_, message) in found.items() if REQUIRE_ALL in message} == set(found)
    assert sum("no sample data" in message for _, message in found.values()) >= 2  # the mark and the fixture
    assert any("no chromium found" in message for _, message in found.values())
