"""throughput.py's rows as tables, and unetkit's default against each reference's faster layout:
every reference runs in both memory layouts, and the target is that unetkit, as the CLI would run
here, is at least as fast as the better of the two, in training and in inference."""

from __future__ import annotations

from unetkit import tables

COLUMNS = [  # header, row key, format spec
    ("model", "model", ""),
    ("dtype", "dtype", ""),
    ("layout", "memory_format", ""),
    ("infer layout", "infer_memory_format", ""),
    ("GFLOP/img", "gflops_per_img", ".1f"),
    ("train img/s", "train_img_s", ".3f"),
    ("infer img/s", "infer_img_s", ".3f"),
    ("unetkit x train", "unetkit_train_speedup", ".2f"),
    ("unetkit x infer", "unetkit_infer_speedup", ".2f"),
    ("train MB", "peak_mem_mb", ".0f"),
    ("train %peak", "peak_fraction", ".1%"),
    ("matmul GF/s", "matmul_peak_gflops", ".0f"),
]
WORK = ("train", "infer")


def mark_faster_layouts(rows: list[dict]) -> list[dict]:
    """Per reference and dtype setting (rows sharing ``reference_setting``), mark the layout that
    unetkit's lead over was smallest, for training and for inference apart (``faster_layout_*``);
    one summary per setting: unetkit's default against that layout."""
    summaries = []
    for setting in dict.fromkeys(row["reference_setting"] for row in rows if row.get("reference_setting")):
        group = [row for row in rows if row.get("reference_setting") == setting]
        summary = {"reference_setting": setting}
        for work in WORK:
            faster = min(group, key=lambda row: row[f"unetkit_{work}_speedup"])
            for row in group:
                row[f"faster_layout_{work}"] = row is faster
            summary[work] = {"layout": faster[f"{'infer_' if work == 'infer' else ''}memory_format"],
                             "unetkit_speedup": faster[f"unetkit_{work}_speedup"]}  # fmt: skip
        summaries.append(summary)
    return summaries


def print_table(rows: list[dict]) -> None:
    """One table per CPU class; "unetkit x" columns: how many times faster unetkit (the CLI's
    choices here) ran; then unetkit against each reference's faster layout."""
    for cpu_class in dict.fromkeys(row["cpu_class"] for row in rows):
        group = [row for row in rows if row["cpu_class"] == cpu_class]
        cells = [[format(row[key], spec) for _, key, spec in COLUMNS] for row in group]
        first = group[0]
        print(f"\nCPU class {cpu_class} {first['cpu_mask'] or ''}: precision auto = {first['precision_auto']}; "
              f"unetkit bfloat16 row {first['bf16_row']}")
        print(f"memory layout auto: training {first['layout_train']}; inference {first['layout_infer']}")
        print(tables.format_table([header for header, _, _ in COLUMNS], cells))
        for summary in mark_faster_layouts(group):
            train, infer = summary["train"], summary["infer"]
            print(f"unetkit vs {summary['reference_setting']} at its faster layout: train {train['unetkit_speedup']:.2f}x "
                  f"({train['layout']}), infer {infer['unetkit_speedup']:.2f}x ({infer['layout']})")
        spreads = {row["dtype"]: row["matmul_gflops"] for row in group}
        for dtype, rates in spreads.items():
            print(f"matmul {dtype} GFLOP/s (best/median/worst) before {rates['before_best']}/{rates['before_median']}/"
                  f"{rates['before_worst']}, after {rates['after_best']}/{rates['after_median']}/{rates['after_worst']}")
        print(f"{first['machine']}; device {first['device']}, {first['threads']} threads, "
              f"1-min load average before/after {first['load_avg_1min']}")
