"""``unetkit data inspect`` for volumes: per volume its shape, spacing, voxel type and intensity
statistics, and its label values; then the class mapping training would use."""

from __future__ import annotations

from typing import Any

import numpy as np

from unetkit.data.labels import ValueScan, distinct_values, instance_labels, labels_from_scan, looks_like_instances
from unetkit.data.layouts import Discovery
from unetkit.data.records import Record
from unetkit.data.volumes import read_volume_annotation, read_volume_record

PERCENTILES = (0.5, 50.0, 99.5)
ANISOTROPY = 3.0  # a coarsest / finest spacing ratio from which a volume is called anisotropic


def volume_facts(record: Record, max_voxels: int) -> tuple[dict[str, Any], np.ndarray]:
    """One volume's row of the report, and its distinct label values."""
    volume = read_volume_record(record, max_voxels)
    voxels = volume.array.reshape(-1, volume.array.shape[-1])[:: max(1, volume.array[..., 0].size // 1_000_000)]
    low, median, high = np.percentile(voxels, PERCENTILES).tolist()
    row = {
        "name": record.name,
        "shape": list(volume.shape),
        "spacing": list(volume.spacing),
        "dtype": str(volume.array.dtype),
        "channels": int(volume.array.shape[-1]),
        "intensity": {"min": float(voxels.min()), "p0.5": low, "median": median, "p99.5": high,
                      "mean": float(voxels.mean()), "std": float(voxels.std())},  # fmt: skip
    }
    if not record.has_mask:
        return row, np.zeros(0, np.int64)
    labels, _ = read_volume_annotation(record, max_voxels)
    if labels.shape != volume.shape:
        row["problem"] = f"labels {record.masks[0]} are {_dhw(labels.shape)} but the image is {_dhw(volume.shape)}"
    values = distinct_values(labels)
    row["label_values"] = len(values)
    return row, values


def inspect_volumes(discovery: Discovery, classes: int | None, max_voxels: int) -> dict[str, Any]:
    """The inspection report of a volume dataset (JSON-ready)."""
    records = discovery.records + discovery.val_records
    scan = ValueScan()
    rows = []
    for record in records:
        row, values = volume_facts(record, max_voxels)
        rows.append(row)
        if record.has_mask:
            scan.add(record.masks[0], values)
    instances = discovery.labels is None and looks_like_instances(scan)
    labels = discovery.labels or (instance_labels() if instances else labels_from_scan(scan, classes))
    warnings = list(discovery.warnings) + [f"{row['name']}: {row['problem']}" for row in rows if "problem" in row]
    anisotropic = [row["name"] for row in rows if max(row["spacing"]) / max(min(row["spacing"]), 1e-9) >= ANISOTROPY]
    if anisotropic:
        warnings.append(f"{len(anisotropic)} volume(s) are anisotropic (spacing ratio >= {ANISOTROPY:.0f}, e.g. "
                        f"{anisotropic[0]}): the plan pools in-plane first or trains a 2D network")  # fmt: skip
    return {
        "layout": discovery.layout,
        "root": str(discovery.root),
        "pairs": len(discovery.records),
        "val_pairs": len(discovery.val_records),
        "volumes": rows,
        "mask_values": sorted(scan.values) if not instances else f"instance ids (up to {len(scan.richest_values) - 1} objects a volume)",
        "labels_from": "layout" if discovery.labels else "masks",
        "classes": [{"id": i, "name": name} for i, name in enumerate(labels.names)],
        "unmatched": {"images": [str(p) for p in discovery.unmatched_images],
                      "masks": [str(p) for p in discovery.unmatched_masks]},  # fmt: skip
        "warnings": warnings,
    }


def format_volume_inspection(report: dict[str, Any]) -> str:
    """The report as lines: the dataset, then one line per volume."""
    classes = ", ".join(f"{row['id']} {row['name']}" for row in report["classes"])
    values = report["mask_values"] if isinstance(report["mask_values"], str) else report["mask_values"][:20]
    lines = [
        f"layout       {report['layout']}  ({report['root']})",
        f"pairs        {report['pairs']} training + {report['val_pairs']} validation",
        f"classes      {classes} (from the {report['labels_from']})",
        f"label values {values}",
        "",
        f"{'volume':<24}{'shape (z y x)':<18}{'spacing (z y x)':<24}{'dtype':<9}intensity p0.5 / median / p99.5, mean +- std",
    ]
    for row in report["volumes"]:
        stats = row["intensity"]
        spacing = " ".join(f"{value:.3g}" for value in row["spacing"])
        lines.append(
            f"{row['name'][:23]:<24}{_dhw(row['shape']):<18}{spacing:<24}{row['dtype']:<9}"
            f"{stats['p0.5']:.4g} / {stats['median']:.4g} / {stats['p99.5']:.4g}, {stats['mean']:.4g} +- {stats['std']:.4g}"
        )
    unmatched = report["unmatched"]
    lines += ["", f"unmatched    {len(unmatched['images'])} images, {len(unmatched['masks'])} labels",
              "warnings     " + ("\n             ".join(f"- {w}" for w in report["warnings"]) or "none")]  # fmt: skip
    return "\n".join(lines)


def _dhw(shape: Any) -> str:
    return "x".join(str(side) for side in list(shape)[:3])
