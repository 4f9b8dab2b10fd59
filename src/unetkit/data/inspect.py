"""``unetkit data inspect``: what a dataset folder holds and how training would read it.

The report is a JSON-ready dict: layout, pairs and groups, image sizes and pixel kinds, mask
values, the class mapping training would use, objects, unmatched files and warnings about things
that quietly hurt training (lossy masks, 16-bit images, tiny objects, empty masks).
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from unetkit.config import LabelConfig
from unetkit.config import DEFAULT_MAX_PIXELS
from unetkit.data.annotations import read_annotation
from unetkit.data.reading import is_jpeg, probe_image
from unetkit.data.labels import ValueScan, distinct_values, labels_from_scan, scan_values
from unetkit.data.layouts import discover
from unetkit.data.records import Record, map_labels
from unetkit.data.volume_inspect import format_volume_inspection, inspect_volumes
from unetkit.data.volumes import is_volume_record

TINY_OBJECT_PIXELS = 10
SHOWN_COUNTS = 8


@dataclass
class _MaskFacts:
    """What one annotation tells, reduced to small numbers."""

    mask: Path
    values: np.ndarray
    object_areas: np.ndarray
    unmapped: str = ""  # why the raw values do not fit the class mapping, if they do not

    @property
    def noisy_jpeg(self) -> bool:
        return is_jpeg(self.mask) and not set(self.values.tolist()) <= {0, 255}


@dataclass
class _Findings:
    scan: ValueScan = field(default_factory=ValueScan)
    objects: int = 0
    tiny_objects: int = 0
    tiny_masks: list[Path] = field(default_factory=list)
    noisy_jpegs: list[Path] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)

    def add(self, facts: _MaskFacts) -> None:
        self.scan.add(facts.mask, facts.values)
        tiny = int(np.count_nonzero(facts.object_areas < TINY_OBJECT_PIXELS))
        self.objects += len(facts.object_areas)
        self.tiny_objects += tiny
        if tiny:
            self.tiny_masks.append(facts.mask)
        if facts.noisy_jpeg:
            self.noisy_jpegs.append(facts.mask)
        if facts.unmapped:
            self.unmapped.append(facts.unmapped)


def inspect_dataset(
    path: str | Path,
    layout: str = "auto",
    classes: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    **discover_options: Any,
) -> dict[str, Any]:
    """Discover the dataset at ``path`` and read every image header and annotation once.

    Datasets whose layout does not fix the labels are read twice: a first pass decides the classes.
    """
    discovery = discover(path, layout, **discover_options)
    if is_volume_record(discovery.records[0]):
        return inspect_volumes(discovery, classes, max_pixels)
    records = discovery.records + discovery.val_records
    labelled = [record for record in records if record.has_mask]
    labels = discovery.labels or labels_from_scan(scan_values(labelled, max_pixels), classes)
    infos = [probe_image(record.image, record.page) for record in records]
    findings = _Findings()
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for facts in pool.map(lambda record: _mask_facts(record, labels, max_pixels), labelled):
            findings.add(facts)
    sixteen_bit = [record.image for record, info in zip(records, infos) if info.is_16bit]
    return {
        "layout": discovery.layout,
        "root": str(discovery.root),
        "pairs": len(discovery.records),
        "val_pairs": len(discovery.val_records),
        "groups": len({record.group for record in records}),
        "image_sizes": dict(Counter(f"{info.width}x{info.height}" for info in infos).most_common()),
        "image_kinds": dict(Counter(info.kind for info in infos).most_common()),
        "mask_values": sorted(findings.scan.values),
        "labels_from": "layout" if discovery.labels else "masks",
        "classes": describe_classes(labels),
        "objects": {"count": findings.objects, "tiny": findings.tiny_objects, "tiny_below_pixels": TINY_OBJECT_PIXELS},
        "unmatched": {
            "images": [str(path) for path in discovery.unmatched_images],
            "masks": [str(path) for path in discovery.unmatched_masks],
        },
        "warnings": discovery.warnings + _warnings(findings, sixteen_bit),
    }


def describe_classes(labels: LabelConfig) -> list[dict[str, Any]]:
    """The class mapping as rows ``{id, name, raw}``, ``raw`` saying which mask values make the class."""
    if labels.mode == "threshold":
        below, above = f"< {labels.threshold}", f">= {labels.threshold}"
        raws = [above, below] if labels.invert else [below, above]
    else:
        raws = [
            ", ".join(str(raw) for raw, class_id in sorted(labels.values.items()) if class_id == index)
            for index in range(len(labels.names))
        ]
    rows = [{"id": index, "name": name, "raw": raw} for index, (name, raw) in enumerate(zip(labels.names, raws))]
    if labels.ignore_values:
        rows.append({"id": labels.ignore_index, "name": "ignore", "raw": ", ".join(map(str, labels.ignore_values))})
    return rows


def format_inspection(report: dict[str, Any]) -> str:
    """The report as an aligned, human-readable table."""
    if "volumes" in report:
        return format_volume_inspection(report)
    objects = report["objects"]
    unmatched = report["unmatched"]
    class_lines = [f"{row['id']:>3} {row['name']:<12} raw {row['raw']}" for row in report["classes"]]
    rows = [
        ("layout", f"{report['layout']}  ({report['root']})"),
        ("pairs", f"{report['pairs']} training + {report['val_pairs']} validation, {report['groups']} groups"),
        ("image sizes", _format_counts(report["image_sizes"])),
        ("image kinds", _format_counts(report["image_kinds"])),
        ("mask values", _format_values(report["mask_values"])),
        (f"classes ({report['labels_from']})", "\n".join(class_lines)),
        ("objects", f"{objects['count']} ({objects['tiny']} under {objects['tiny_below_pixels']} px)"),
        ("unmatched", f"{len(unmatched['images'])} images, {len(unmatched['masks'])} masks"),
        ("warnings", "\n".join(f"- {warning}" for warning in report["warnings"]) or "none"),
    ]
    width = max(len(name) for name, _ in rows) + 2
    lines = []
    for name, text in rows:
        first, *rest = text.split("\n")
        lines.append(f"{name:<{width}}{first}")
        lines.extend(" " * width + line for line in rest)
    return "\n".join(lines)


def _mask_facts(record: Record, labels: LabelConfig, max_pixels: int) -> _MaskFacts:
    semantic, instances = read_annotation(record, max_pixels)
    values = distinct_values(semantic)
    mask = record.masks[0]
    if instances is not None:
        return _MaskFacts(mask, values, _areas(instances))
    try:
        class_ids = map_labels(semantic, labels)
    except ValueError as error:
        return _MaskFacts(mask, values, np.zeros(0, dtype=np.int64), f"{mask}: {error}")
    foreground = (class_ids != 0) & (class_ids != labels.ignore_index)
    components, _ = ndimage.label(foreground)
    return _MaskFacts(mask, values, _areas(components))


def _areas(instances: np.ndarray) -> np.ndarray:
    counts = np.bincount(instances.ravel())[1:]
    return counts[counts > 0]


def _warnings(findings: _Findings, sixteen_bit: list[Path]) -> list[str]:
    warnings = list(findings.unmapped[:SHOWN_COUNTS])
    if findings.noisy_jpegs:
        warnings.append(
            f"{len(findings.noisy_jpegs)} JPEG mask(s) hold values besides 0 and 255 (e.g. {findings.noisy_jpegs[0]}): "
            f"compression noise, thresholded at 128; prefer PNG masks"
        )
    if sixteen_bit:
        warnings.append(
            f"{len(sixteen_bit)} image(s) are 16-bit (e.g. {sixteen_bit[0]}): scaled by 65535; "
            f"use percentile normalisation if they use few of the levels"
        )
    if findings.tiny_objects:
        warnings.append(
            f"{findings.tiny_objects} object(s) smaller than {TINY_OBJECT_PIXELS} pixels in "
            f"{len(findings.tiny_masks)} mask(s) (e.g. {findings.tiny_masks[0]}): annotation specks?"
        )
    return warnings


def _format_counts(counts: dict[str, int]) -> str:
    shown = [f"{key}: {count}" for key, count in list(counts.items())[:SHOWN_COUNTS]]
    hidden = len(counts) - SHOWN_COUNTS
    return ", ".join(shown) + (f" (+{hidden} more)" if hidden > 0 else "")


def _format_values(values: list[int]) -> str:
    shown = ", ".join(map(str, values[:20]))
    return shown + (f" ... ({len(values)} values)" if len(values) > 20 else "")
