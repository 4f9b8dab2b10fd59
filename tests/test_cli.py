"""The command line end to end on tiny generated data: train -> predict -> evaluate, resume, bad input."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetkit.cli import main
from unetkit.data.synthetic import generate_dataset

TINY = ["--base-width", "4", "--depth", "2", "--batch-size", "4", "--workers", "0", "--image-size", "32", "--samples", "2",
        "--no-plan"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("data") / "set", n_images=10, size=48, seed=1)


@pytest.fixture(scope="module")
def trained_run(data_dir, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", "--data", str(data_dir), "--out", str(run), "--epochs", "2", *TINY]) == 0
    return run


def read_metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_train_writes_the_run_folder(trained_run):
    for name in ("config.yaml", "best.pt", "last.pt", "metrics.csv", "curves.png", "split.json"):
        assert (trained_run / name).stat().st_size > 0, name
    rows = read_metrics(trained_run)
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert set(rows[0]) == {"step", "epoch", "train_loss", "val_loss", "val_dice", "val_iou", "val_accuracy", "lr",
                            "seconds"}
    assert all(0.0 <= float(row["val_dice"]) <= 1.0 for row in rows)
    steps = [int(row["step"]) for row in rows]
    assert steps[1] == 2 * steps[0] > 0
    assert sorted(p.name for p in (trained_run / "samples").iterdir()) == [f"step_{step:06d}.png" for step in steps]
    split = json.loads((trained_run / "split.json").read_text())
    assert len(split["train"]) + len(split["val"]) == 10 and not set(split["train"]) & set(split["val"])


def test_predict_writes_visible_masks_and_overlays_at_input_size(trained_run, data_dir, tmp_path):
    out = tmp_path / "pred"
    image = data_dir / "images" / sorted(p.name for p in (data_dir / "images").iterdir())[0]
    code = main(["predict", "--checkpoint", str(trained_run / "best.pt"), str(image), "--out", str(out), "--overlay"])
    assert code == 0
    mask = np.asarray(Image.open(out / f"{image.stem}_mask.png"))
    assert mask.shape == (48, 48) and set(np.unique(mask)) <= {0, 255}
    overlay = Image.open(out / f"{image.stem}_overlay.png")
    assert overlay.size == (48, 48)


def test_predict_a_folder_to_rle(trained_run, data_dir, tmp_path):
    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(trained_run / "best.pt"), str(data_dir / "images"),
                 "--out", str(out), "--format", "rle"]) == 0
    with open(out / "rle.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["img", "rle_mask"] and len(rows) == 11


def test_evaluate_prints_a_table_and_writes_json(trained_run, data_dir, tmp_path, capsys):
    report_path = tmp_path / "eval.json"
    assert main(["evaluate", "--checkpoint", str(trained_run / "best.pt"), "--data", str(data_dir),
                 "--json", str(report_path)]) == 0
    assert "pixel accuracy" in capsys.readouterr().out
    report = json.loads(report_path.read_text())
    assert {"dice", "iou", "pixel_accuracy", "per_class", "images"} <= set(report)
    assert len(report["images"]) == 10 and len(report["per_class"]) == 2


def test_resume_continues_the_epoch_count(trained_run, data_dir, tmp_path):
    run = tmp_path / "resumed"
    shutil.copytree(trained_run, run)
    assert main(["train", "--data", str(data_dir), "--out", str(run), "--epochs", "3", "--resume", *TINY]) == 0
    assert [row["epoch"] for row in read_metrics(run)] == ["1", "2", "3"]


def expect_error(capsys, argv: list[str], *fragments: str) -> None:
    assert main(argv) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("unetkit: error:"), message
    for fragment in fragments:
        assert fragment in message, message


def test_empty_folder_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    expect_error(capsys, ["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "run")], "empty")


def test_folder_without_matching_masks(tmp_path, capsys, data_dir):
    bad = tmp_path / "bad"
    shutil.copytree(data_dir / "images", bad / "images")
    (bad / "masks").mkdir()
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(bad / "masks" / "unrelated.png")
    expect_error(capsys, ["train", "--data", str(bad), "--out", str(tmp_path / "run"), *TINY], str(bad))


def copy_dataset(data_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(data_dir, target)
    return target


def test_corrupt_image_names_the_file(tmp_path, capsys, data_dir):
    data = copy_dataset(data_dir, tmp_path)
    victim = sorted((data / "images").iterdir())[0]
    victim.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    expect_error(capsys, ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1", *TINY], victim.name)


def test_mask_of_another_size_names_both_files(tmp_path, capsys, data_dir):
    data = copy_dataset(data_dir, tmp_path)
    victim = sorted((data / "masks").iterdir())[0]
    Image.fromarray(np.zeros((40, 48), np.uint8)).save(victim)
    expect_error(capsys, ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1", "--val-fraction", "0.5", *TINY], victim.name)


def test_checkpoint_that_is_not_one(tmp_path, capsys, data_dir):
    fake = tmp_path / "fake.pt"
    fake.write_text("hello")
    expect_error(capsys, ["predict", "--checkpoint", str(fake), str(data_dir / "images"), "--out", str(tmp_path / "o")], "fake.pt")


def test_classes_contradicting_mask_values(tmp_path, capsys, data_dir):
    data = copy_dataset(data_dir, tmp_path)
    victim = sorted((data / "masks").iterdir())[0]
    values = np.zeros((48, 48), np.uint8)
    values[:10], values[10:20] = 100, 200
    Image.fromarray(values).save(victim)
    expect_error(capsys, ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--classes", "2", *TINY], "--classes")


def test_failed_run_leaves_earlier_outputs_untouched(tmp_path, capsys, trained_run, data_dir):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    data = copy_dataset(data_dir, tmp_path)
    for image in (data / "images").iterdir():
        image.write_bytes(b"broken")
    assert main(["train", "--data", str(data), "--out", str(run), "--epochs", "1", *TINY]) == 2
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


@pytest.mark.export
def test_export_onnx_then_predict_with_onnxruntime(trained_run, data_dir, tmp_path):
    checkpoint = tmp_path / "model.pt"
    shutil.copy(trained_run / "best.pt", checkpoint)
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "onnx", "--out", str(tmp_path / "model.onnx")]) == 0
    masks = {}
    for engine in ("torch", "onnxruntime"):
        out = tmp_path / engine
        assert main(["predict", "--checkpoint", str(checkpoint), str(data_dir / "images"), "--out", str(out),
                     "--engine", engine, "--precision", "32"]) == 0
        masks[engine] = {p.name: np.asarray(Image.open(p)) for p in sorted(out.glob("*_mask.png"))}
    assert masks["torch"].keys() == masks["onnxruntime"].keys() and len(masks["torch"]) == 10
    for name, mask in masks["torch"].items():
        assert (mask != masks["onnxruntime"][name]).mean() < 1e-3, name


@pytest.mark.parametrize("fmt, suffix", [("torchscript", "pt"), ("safetensors", "safetensors")])
def test_export_other_formats(trained_run, tmp_path, fmt, suffix):
    out = tmp_path / f"model.{suffix}"
    assert main(["export", "--checkpoint", str(trained_run / "best.pt"), "--format", fmt, "--out", str(out)]) == 0
    assert out.stat().st_size > 0


def test_weight_maps_are_drawn_for_a_look(data_dir, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--data", str(data_dir), "--out", str(run), "--epochs", "1", "--loss", "weighted-bce",
                 "--weight-map", "--save-weight-maps", *TINY]) == 0
    drawn = sorted((run / "weight_maps").glob("*_weights.png"))
    assert len(drawn) == 8
    assert Image.open(drawn[0]).size == (48, 48)


def test_threads_option_sets_torch_threads(trained_run, data_dir, tmp_path, monkeypatch):
    import torch

    chosen = []
    monkeypatch.setattr(torch, "set_num_threads", chosen.append)
    image = next((data_dir / "images").iterdir())
    checkpoint = str(trained_run / "best.pt")
    assert main(["predict", "--threads", "1", "--checkpoint", checkpoint, str(image), "--out", str(tmp_path)]) == 0
    assert chosen == [1]


def test_threads_must_be_positive(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--threads", "0"])
    assert exit_info.value.code == 2 and "expected a whole number >= 1, got 0" in capsys.readouterr().err


def test_quiet_runs_draw_no_progress_bars(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(data_dir), "--out", str(run), "--epochs", "1", *TINY]) == 0
    assert "train: " in capsys.readouterr().err  # the bar, drawn when not quiet
    assert main(["-q", "train", "--data", str(data_dir), "--out", str(tmp_path / "quiet"), "--epochs", "1", *TINY]) == 0
    assert main(["-q", "predict", "--checkpoint", str(run / "best.pt"), str(data_dir / "images"),
                 "--out", str(tmp_path / "masks")]) == 0
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------- batches that go on


def damaged_batch(data_dir: Path, folder: Path) -> list[str]:
    """5 images named a..e of which b and d are damaged; returns the damaged names."""
    folder.mkdir()
    for name, source in zip("abcde", sorted((data_dir / "images").iterdir())):
        shutil.copy(source, folder / f"{name}.png")
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (folder / "d.png").write_bytes(b"")
    return ["b.png", "d.png"]


def test_predict_skips_damaged_images_writes_the_rest_and_exits_1(trained_run, data_dir, tmp_path, capsys):
    damaged = damaged_batch(data_dir, tmp_path / "in")
    out = tmp_path / "out"
    code = main(["predict", "--checkpoint", str(trained_run / "best.pt"), str(tmp_path / "in"), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["a_mask.png", "c_mask.png", "e_mask.png"]
    for name in damaged:
        assert sum(name in line and line.startswith("unetkit: error:") for line in err) == 1, err
    assert err[-1] == "predicted 3 of 5; 2 failed: b.png, d.png"


def test_predict_fail_fast_stops_at_the_first_damaged_image_with_exit_2(trained_run, data_dir, tmp_path, capsys):
    damaged_batch(data_dir, tmp_path / "in")
    out = tmp_path / "out"
    expect_error(capsys, ["predict", "--checkpoint", str(trained_run / "best.pt"), str(tmp_path / "in"),
                          "--out", str(out), "--fail-fast"], "b.png")
    assert sorted(p.name for p in out.iterdir()) == ["a_mask.png"]


def test_evaluate_lists_failed_images_in_its_json_and_exits_1(trained_run, data_dir, tmp_path, capsys):
    data = copy_dataset(data_dir, tmp_path)
    victim = sorted((data / "images").iterdir())[0]
    victim.write_bytes(b"broken")
    report_path = tmp_path / "eval.json"
    assert main(["evaluate", "--checkpoint", str(trained_run / "best.pt"), "--data", str(data),
                 "--json", str(report_path)]) == 1
    report = json.loads(report_path.read_text())
    assert list(report["failed"]) == [str(victim)] and len(report["images"]) == 9
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"evaluated 9 of 10; 1 failed: {victim.name}"
    expect_error(capsys, ["evaluate", "--checkpoint", str(trained_run / "best.pt"), "--data", str(data), "--fail-fast"],
                 str(victim))


def test_the_demo_runs_the_whole_loop(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--epochs", "1", "--threads", "1"]) == 0
    report = json.loads((out / "held-out.json").read_text())
    assert 0.0 <= report["dice"] <= 1.0 and len(report["images"]) == 16
    assert (out / "run" / "best.pt").exists() and (out / "run" / "metrics.csv").exists()
    assert len(list((out / "predictions").glob("*_overlay.png"))) == 16


def test_the_program_exits_with_mains_status_its_heap_frozen_for_a_fast_exit(monkeypatch):
    """The interpreter's exit would collect every object the imports made (about 1 s on 2 cores)."""
    import gc

    import unetkit.cli

    monkeypatch.setattr(unetkit.cli, "main", lambda: 3)
    try:
        with pytest.raises(SystemExit) as exited:
            unetkit.cli.run_command()
        assert exited.value.code == 3 and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
