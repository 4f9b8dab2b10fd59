"""benchmarks/common.py's publish(): every JSON a benchmark writes says where, when, with which torch
and by which command its figures were measured (issue 19: figures from committed runs)."""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from common import command_line, machine, publish  # noqa: E402


def test_published_json_records_machine_torch_date_and_command(tmp_path: Path, capsys) -> None:
    path = tmp_path / "result.json"
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    returned = publish({"command": command_line("demo_bench.py", ["--json", str(path)]), "rows": [1.5]}, "table", path)
    written = json.loads(path.read_text())
    assert written == returned and written["rows"] == [1.5]
    assert written["machine"] == machine() and written["torch"] == torch.__version__
    assert written["command"] == f"python benchmarks/demo_bench.py --json {path}"
    measured = datetime.datetime.fromisoformat(written["date"])
    assert measured.tzinfo is not None and before <= measured <= datetime.datetime.now(datetime.timezone.utc)
    assert capsys.readouterr().out == "table\n"


def test_what_the_script_recorded_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    publish({"machine": "a GPU box", "date": "2026-01-02T03:04:05+00:00", "command": "x"}, "", path)
    written = json.loads(path.read_text())
    assert written["machine"] == "a GPU box" and written["date"] == "2026-01-02T03:04:05+00:00"
