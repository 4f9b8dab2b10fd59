"""Volumes at equal budget: `unetkit train --time T` (planned: 3D or 2D slices, and why) on the
dev-visible volumes, the best validation Dice, and held-out Dice from `unetkit evaluate`.

Protocol, fixed once:
- ``plantseg3d``: the three PlantSeg crops (two nucleus volumes, one ovule; multi-page TIFF,
  instance labels read as foreground). nuclei_1135 and ovule train, nuclei_1136 validates
  (chooses best.pt) and is what Dice and the 3D object scores (``evaluate --instances``: DSB
  score, AP and F1 at IoU 0.5, merges) are reported on. Too small to judge accuracy: it shows the
  3D path end to end.
- ``isbi2012``: the 30 labelled ISBI 2012 slices stacked into one 30 x 512 x 512 ssTEM volume:
  slices 0-24 train, 25-29 validate (the README's fixed split), Dice of the cell interiors (label
  255). The stack is thin and anisotropic: the plan is expected to choose 2D slices.
Each dataset gets half of ``--time``.

    PYTHONPATH=src python benchmarks/volumes.py --time 10m --json benchmarks/results/volumes-10m.json
    PYTHONPATH=src python benchmarks/volumes.py --time 1m --json /tmp/volumes-1m.json   # a smoke run
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import tifffile
import yaml
from common import SHARED_DATA, command_line, machine, publish, run_train
from PIL import Image

from unetkit import cli, tables
from unetkit.config import parse_duration

PLANTSEG_SPLIT = {"train": ("nuclei_1135", "ovule"), "val": ("nuclei_1136",)}
ISBI_SPLIT = {"train": range(0, 25), "val": range(25, 30)}


def plantseg_folders(work: Path) -> dict[str, Path]:
    """``images/`` + ``labels/`` folders of links to the PlantSeg volumes, one per split."""
    source = SHARED_DATA / "plantseg3d"
    folders = {}
    for split, names in PLANTSEG_SPLIT.items():
        for kind in ("images", "labels"):
            (work / f"plantseg-{split}" / kind).mkdir(parents=True)
            for name in names:
                (work / f"plantseg-{split}" / kind / f"{name}.tif").symlink_to(source / kind / f"{name}.tif")
        folders[split] = work / f"plantseg-{split}"
    return folders


def isbi_folders(work: Path) -> dict[str, Path]:
    """The ISBI 2012 slices as one stack per split (images, and labels 0 membrane / 255 cell)."""
    source = SHARED_DATA / "isbi2012" / "train"
    folders = {}
    for split, slices in ISBI_SPLIT.items():
        for kind, out_kind in (("image", "images"), ("label", "labels")):
            stack = np.stack([np.asarray(Image.open(source / kind / f"{index}.png").convert("L")) for index in slices])
            (work / f"isbi-{split}" / out_kind).mkdir(parents=True)
            tifffile.imwrite(work / f"isbi-{split}" / out_kind / "isbi.tif", stack, imagej=True, metadata={"axes": "ZYX"})
        folders[split] = work / f"isbi-{split}"
    return folders


OBJECT_FIGURES = ("dsb_score", "ap_50", "f1_50", "aji")


def run_one(
    name: str, folders: dict[str, Path], seconds: float, work: Path, extra: Sequence[str], objects: bool = False
) -> dict:
    run = work / f"run-{name}"
    wall = run_train(["--data", str(folders["train"]), "--val-data", str(folders["val"]), "--out", str(run),
                      "--time", f"{seconds:.0f}s", *extra])  # fmt: skip
    plan = yaml.safe_load((run / "plan.yaml").read_text())
    dims_choice = next(choice for choice in plan["choices"] if choice["path"] == "model.dims")
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    report = work / f"{name}-evaluate.json"
    instances = ["--instances"] * objects
    if cli.main(["-q", "evaluate", "--checkpoint", str(run / "best.pt"), "--data", str(folders["val"]), *instances,
                 "--json", str(report)]):  # fmt: skip
        raise SystemExit(f"unetkit evaluate of {name} failed")
    evaluation = json.loads(report.read_text())
    return {
        "dataset": name,
        "dims": dims_choice["value"],
        "why": dims_choice["reason"],
        "steps": int(rows[-1]["step"]) if rows else 0,
        "best_val_dice": max((float(row["val_dice"]) for row in rows), default=float("nan")),
        "held_out_dice": evaluation["dice"],
        "per_class_dice": {row["name"]: row["dice"] for row in evaluation["per_class"]},
        "objects": {key: evaluation[key] for key in OBJECT_FIGURES if key in evaluation} | _merges(evaluation),
        "train_seconds": round(wall, 1),
    }


def _merges(evaluation: dict) -> dict:
    """True and predicted object counts and merges summed over the evaluated volumes (none without objects)."""
    keys = ("true_objects", "predicted_objects", "merged_objects", "split_objects")
    return {key: sum(image[key] for image in evaluation["images"]) for key in keys if key in evaluation["images"][0]}


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--time", default="10m", help="the whole budget, split between the datasets (default 10m)")
    parser.add_argument("--json", type=Path, help="write the result here")
    args, extra = parser.parse_known_args(argv)
    share = parse_duration(args.time) / 2
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        results = [
            run_one("plantseg3d", plantseg_folders(work), share, work, extra, objects=True),
            run_one("isbi2012-stack", isbi_folders(work), share, work, extra),
        ]
    table = tables.format_table(
        ["dataset", "dims", "steps", "best val Dice", "held-out Dice", "DSB score", "train s"],
        [[r["dataset"], r["dims"], r["steps"], f"{r['best_val_dice']:.4f}", f"{r['held_out_dice']:.4f}",
          f"{r['objects']['dsb_score']:.4f}" if "dsb_score" in r["objects"] else "-", r["train_seconds"]] for r in results],
    )  # fmt: skip
    result = {"command": command_line(__file__, argv), "machine": machine(), "budget": args.time, "results": results}
    return publish(result, table, args.json)


if __name__ == "__main__":
    main()
