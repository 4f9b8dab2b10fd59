"""The arena: unetkit against what its users would run instead, same data, same wall clock.

For each dataset and arm (issue 22): train on the same images for the same budget T, predict
the same held-out images, score every prediction with ONE scorer, unetkit's metrics
(``arena_data.score``: Dice, and on data with objects the instance scores of ``unetkit evaluate
--instances``, a peer's objects being the connected components of its masks). Arms run one at a
time, each command a child process timed (and its peak RSS read) from here:
  unetkit: ``unetkit train --data TRAIN --out RUN --time T`` on the dataset's own layout, then
           ``unetkit predict --checkpoint RUN/best.pt TEST/images --out PRED [--instances]`` (each as
           ``python -m unetkit`` of this interpreter);
  nnunet, monai, smp, seeds: ``python -m arena_arms.<module> train|predict`` on plain folders
           exported from the same records (arena_arms/*.py say what each runs).
Splits (budget.py's): isbi2012 slices 0-24 -> 25-29; carvana first car -> second car; dsb2018
48 -> 12 images; generated: 48 -> 12 generated 256 px images of touching blobs. An arm whose
packages do not import is a row with status "not installed" and the reason.

    PYTHONPATH=src python benchmarks/arena.py --time 10m --datasets isbi2012 carvana dsb2018 generated \\
        --arms unetkit nnunet monai smp seeds --peer-python /work/venv-arena/bin/python --json arena.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from arena_data import INSTANCE_DATASETS, SPLITS, export_plain, score
from arena_run import (ARMS, NOT_INSTALLED, PACKAGES, Child, arm_commands, last_line, run_child, training_summary,
                       versions)
from common import SHARED_DATA, command_line, machine, publish

from unetkit import tables
from unetkit.config import parse_duration

NOTE = "arms ran one at a time, each command a process of its own timed from outside"
SLACK_SECONDS = 600  # past the budget, a child is killed (preprocessing, saving, a last epoch)


def prepare(name: str, data: Path, work: Path) -> tuple[Path, Path, Path]:
    """(unetkit's training folder in the dataset's layout, the plain training folder, the plain test folder)."""
    data_flags, test = SPLITS[name](data / name, work)
    train = Path(data_flags[1])
    return train, export_plain(train, work / "plain-train"), export_plain(test, work / "plain-test")


def run_arm(arm: str, python: str, folders: tuple[Path, Path, Path], run: Path, seconds: float,
            instances: bool) -> dict:
    """Train, predict and score one arm; a row of its status, costs, steps and scores."""
    native, train, test = folders
    run.mkdir(parents=True)
    commands = arm_commands(arm, python, native if arm == "unetkit" else train, test, run, seconds, instances)
    limit = 2 * seconds + SLACK_SECONDS
    children = {"train": run_child(commands["train"], run / "train.log", limit)}
    if arm != "unetkit" and children["train"].returncode == NOT_INSTALLED:
        return {"status": "not installed", "reason": last_line(children["train"].log), "python": python}
    if children["train"].returncode == 0:
        children["predict"] = run_child(commands["predict"], run / "predict.log", limit)
    row = {"status": "ok", "python": python, **costs(children)}
    for step, child in children.items():
        if child.returncode:
            return row | {"status": "failed", "reason": f"{step} exited {child.returncode}: {last_line(child.log)}"}
    return row | training_summary(arm, run) | score(test, run / "predictions", instances)


def costs(children: dict[str, Child]) -> dict[str, float]:
    """Each step's wall seconds and peak RSS (MiB), as measured from here."""
    measured = {}
    for step, child in children.items():
        measured |= {f"{step}_seconds": round(child.seconds, 1), f"{step}_peak_rss_mb": round(child.peak_rss_mb, 1)}
    return measured


def interpreters(peer_python: str, chosen: list[str]) -> dict[str, str]:
    """Each arm's python: unetkit's is this one, the peers' ``peer_python``, unless ``ARM=PYTHON`` says otherwise."""
    chosen_pythons = dict(pair.split("=", 1) for pair in chosen)
    return {arm: peer_python for arm in ARMS} | {"unetkit": sys.executable} | chosen_pythons


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    parser.add_argument("--datasets", nargs="+", choices=list(SPLITS), default=list(SPLITS))
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=ARMS)
    parser.add_argument("--time", default="10m", help="each arm's training budget (unetkit's --time syntax)")
    parser.add_argument("--peer-python", default=sys.executable, help="the interpreter of the peer arms (their venv)")
    parser.add_argument("--python", nargs="+", default=[], metavar="ARM=PYTHON", help="an interpreter for one arm")
    parser.add_argument("--out", type=Path, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    seconds = parse_duration(args.time)
    pythons = interpreters(args.peer_python, args.python)
    rows = []
    with tempfile.TemporaryDirectory() as temporary:
        out = args.out or Path(temporary)
        for name in args.datasets:
            folders = prepare(name, args.data, out / name / "data")
            for arm in args.arms:
                row = run_arm(arm, pythons[arm], folders, out / name / arm, seconds, name in INSTANCE_DATASETS)
                rows.append({"dataset": name, "arm": arm, "budget_seconds": seconds, **row,
                             "versions": versions(pythons[arm], PACKAGES[arm]), "machine": machine(), "note": NOTE})
                print(json.dumps(rows[-1]), flush=True)
    result = {"machine": machine(), "command": command_line(__file__, argv), "note": NOTE, "rows": rows}
    return publish(result, markdown(result), args.json)


COLUMNS = ["arm", "status", "dice", "dsb_score", "ap_50", "f1_50", "train_seconds", "predict_seconds",
           "steps", "epochs", "train_peak_rss_mb"]  # fmt: skip


def markdown(result: dict) -> str:
    """Per dataset, each arm's scores as a Markdown table, under the command and the machine."""
    lines = [f"`{result['command']}`", "", f"Machine: {result['machine']} ({result['note']})"]
    for dataset in dict.fromkeys(row["dataset"] for row in result["rows"]):
        lines += ["", f"### {dataset}", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        rows = [row for row in result["rows"] if row["dataset"] == dataset]
        lines += ["| " + " | ".join(_cell(row.get(column)) for column in COLUMNS) + " |" for row in rows]
        lines += [f"- {row['arm']} {row['status']}: {row['reason']}" for row in rows if row.get("reason")]
    return "\n".join(lines)


def _cell(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else tables._cell(value)


if __name__ == "__main__":
    main()
