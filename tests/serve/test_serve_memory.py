"""benchmarks/serve_memory.py end to end at small limits: concurrent maximum-size uploads against a
real server leave it alive, answering /health, within its documented memory bound."""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_concurrent_max_size_uploads_stay_within_the_memory_bound(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    import serve_memory

    argv = ["--clients", "12", "--queue", "3", "--max-pixels", "1000000", "--max-memory-mb", "128", "--rounds", "2",
            "--json", str(tmp_path / "memory.json")]  # fmt: skip
    try:
        result = serve_memory.main(argv)
    except SystemExit:
        raise AssertionError(json.loads((tmp_path / "memory.json").read_text())) from None
    assert result["passed"] and result["server_alive"] and result["peak_rss_mib"] <= result["bound_mib"]
    assert result["statuses"]["200"] >= 2 and result["statuses"]["503"] >= 2  # a full queue refuses, before decoding
    assert result["health"]["failures"] == 0 and result["health"]["max_pending"] <= 3
    recorded = json.loads((tmp_path / "memory.json").read_text())
    assert {"machine", "date", "torch", "command", "peak_rss_mib", "bound_mib"} <= set(recorded)
