"""The long fuzz run: tests/test_fuzz.py's properties with many examples each.

Runs the test file through pytest with UNETKIT_FUZZ_EXAMPLES set, then prints, per entry point,
how many cases ran and how they ended ("ok" / "exit 0": a result; an error type, "exit 2", or
"exit 1" from predict, which reports and skips an image it cannot read: unetkit's own error with a
message), and every property that failed (pytest shows the falsifying example above the summary).
A case is one generated input through one entry point.

    PYTHONPATH=src python benchmarks/fuzz.py                 # 2,100 examples per property (> 10,000 cases)
    PYTHONPATH=src python benchmarks/fuzz.py --examples 200 -k predict
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pytest

TEST_FILE = Path(__file__).resolve().parents[1] / "tests" / "test_fuzz.py"


class Outcomes:
    """A pytest plugin that keeps each property's result and, at the end, the outcome counts."""

    def __init__(self) -> None:
        self.results: dict[str, str] = {}
        self.counts: dict[str, dict[str, int]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or report.outcome == "failed":
            self.results[report.nodeid.split("::")[-1]] = report.outcome

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        module = sys.modules.get(TEST_FILE.stem)
        self.counts = {prop: dict(counter) for prop, counter in getattr(module, "OUTCOMES", {}).items()}


def report(outcomes: Outcomes, seconds: float) -> int:
    total = 0
    print(f"\n{'entry point':<20} {'cases':>7}  outcomes")
    for prop, counts in sorted(outcomes.counts.items()):
        cases = sum(counts.values())
        total += cases
        detail = ", ".join(f"{name} {count}" for name, count in sorted(counts.items(), key=lambda item: -item[1]))
        print(f"{prop:<20} {cases:>7}  {detail}")
    failed = [name for name, outcome in outcomes.results.items() if outcome == "failed"]
    print(f"{'total':<20} {total:>7}  in {seconds:.0f} s")
    print(f"properties: {len(outcomes.results)} run, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2100, help="hypothesis examples per property")
    parser.add_argument("-k", dest="keyword", help="only the properties whose names match (pytest -k)")
    args = parser.parse_args()
    os.environ["UNETKIT_FUZZ_EXAMPLES"] = str(args.examples)  # read by test_fuzz.py when pytest imports it
    outcomes = Outcomes()
    pytest_args = [str(TEST_FILE), "-q", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning"]
    if args.keyword:
        pytest_args += ["-k", args.keyword]
    started = time.perf_counter()
    pytest.main(pytest_args, plugins=[outcomes])
    return report(outcomes, time.perf_counter() - started)


if __name__ == "__main__":
    sys.exit(main())
