"""benchmarks/serve_load.py end to end at tiny settings: every request answered, every fault a 4xx."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_serve_load_runs_and_every_malformed_upload_gets_a_4xx(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    import serve_load

    argv = ["--width", "4", "--depth", "2", "--size", "32", "--images", "2", "--clients", "2", "--requests", "2",
            "--rounds", "1", "--min-speedup", "0", "--json", str(tmp_path / "load.json")]  # fmt: skip
    result = serve_load.main(argv)
    assert result["passed"] and result["failed_requests"] == 0 and (tmp_path / "load.json").is_file()
    assert result["rounds"][0]["concurrent"]["requests"] == 4 and result["server_peak_mib"] > 0
    assert sorted(fault["status"] for fault in result["faults"].values()) == [400, 413, 415, 422, 422]
