"""Plain-text tables for the terminal: the plan's choices, evaluation results, benchmark figures."""

from __future__ import annotations

from typing import Any


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def format_table(header: list[str], rows: list[list[Any]]) -> str:
    cells = [header] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(text.ljust(width) for text, width in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


OBJECT_COLUMNS = (("dsb_score", "DSB score"), ("ap_50", "AP@0.5"), ("precision_50", "precision"), ("recall_50", "recall"),
                  ("f1_50", "F1"), ("pq", "PQ"), ("aji", "AJI"), ("seg", "SEG"))  # fmt: skip


def format_objects(report: dict[str, Any]) -> str:
    """The object metrics: means over images, and pooled over every object."""
    pooled = report.get("pooled", {})
    rows = [["mean over images", *(report.get(key) for key, _ in OBJECT_COLUMNS)],
            ["pooled objects", *(pooled.get(key) for key, _ in OBJECT_COLUMNS)]]  # fmt: skip
    return format_table(["objects (IoU 0.5 matches)", *(label for _, label in OBJECT_COLUMNS)], rows)


def format_evaluation(report: dict[str, Any]) -> str:
    """Per-class rows, then the foreground mean and pixel accuracy (and instance scores if any)."""
    rows = [[c["class"], c["name"], c["dice"], c["iou"], c["support"]] for c in report["per_class"]]
    rows.append(["mean", "foreground", report["dice"], report["iou"], ""])
    lines = [format_table(["class", "name", "dice", "iou", "pixels"], rows)]
    lines.append(f"pixel accuracy {report['pixel_accuracy']:.4f} over {len(report['images'])} image(s)")
    if "dsb_score" in report:
        lines += ["", format_objects(report)]
    if "raw" in report:
        raw = ", ".join(f"{key} {report['raw'][key]:.4f}" for key in ("dice", "iou", "dsb_score", "seg") if key in report["raw"])
        lines.append(f"without the post-processing chosen on validation: {raw}")
    return "\n".join(lines)
