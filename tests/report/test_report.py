"""`unetkit report` and `evaluate --report`: one HTML file, worst image first, pictures embedded."""

from __future__ import annotations

import base64
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetkit.cli import main
from unetkit.data.layouts import discover
from unetkit.errors import DataError
from unetkit.inference.evaluate import read_truth
from unetkit.inference.predictor import Predictor
from unetkit.report.figures import FALSE_NEGATIVE, FALSE_POSITIVE, OBJECT_COLOURS, error_overlay, object_outlines
from unetkit.report.html import image_key, write_report
from unetkit.report.sources import evaluate_with_panels, evaluation_content, json_content, run_content

ROW = re.compile(r'<tbody class="image" data-dice="([^"]*)" data-iou="[^"]*"\s+data-accuracy="[^"]*" data-errors="([^"]*)"')
OBJECT_ROW = re.compile(r'data-dsb="([^"]*)" data-aji="[^"]*"\s+data-splits="([^"]*)" data-merges="([^"]*)">')


def embedded_pictures(html: str) -> list[np.ndarray]:
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(data)))) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


def test_error_overlay_paints_false_positives_and_negatives_apart() -> None:
    rgb = np.zeros((1, 4, 3), np.uint8)
    truth = np.array([[0, 1, 1, 255]], np.uint8)
    prediction = np.array([[1, 0, 1, 1]], np.uint8)
    painted = error_overlay(rgb, truth, prediction, ignore_index=255)
    np.testing.assert_array_equal(painted[0, 0], np.rint(0.6 * np.array(FALSE_POSITIVE)))
    np.testing.assert_array_equal(painted[0, 1], np.rint(0.6 * np.array(FALSE_NEGATIVE)))
    np.testing.assert_array_equal(painted[0, 2:], 0)  # right, and ignored


def test_evaluation_report_lists_images_worst_first_with_their_four_pictures(
    tmp_path: Path, dataset: Path, checkpoint: Path
) -> None:
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu", precision="32")
    records = discover(dataset).records
    state, panels = evaluate_with_panels(predictor, records, predictor.config)
    html = write_report(tmp_path / "report.html", evaluation_content("test", state, panels, predictor.config)).read_text()

    rows = ROW.findall(html)
    dice = [float(value) for value, _ in rows]
    assert len(rows) == len(records) and dice == sorted(dice) and len(set(dice)) > 1
    for record in records:  # wrong-pixel counts are the prediction's disagreements with the truth
        image, truth, _ = read_truth(record, predictor.config)
        wrong = int((predictor.labels(predictor.predict_image(image)) != truth).sum())
        assert panels[image_key(record.image)].errors == wrong
    assert sorted(int(errors) for _, errors in rows) == sorted(panel.errors for panel in panels.values())
    pictures = embedded_pictures(html)
    assert len(pictures) == 4 * len(records) and all(picture.shape == (48, 48, 3) for picture in pictures)
    confusion = state.confusion.matrix.tolist()
    assert f"<td>{confusion[0][1]}</td>" in html and sum(map(sum, confusion)) == 48 * 48 * len(records)
    assert "http" not in html.replace("http-equiv", "")  # nothing to fetch: the file stands alone


def test_with_instances_the_report_ranks_images_by_their_objects_and_draws_them(
    tmp_path: Path, dataset: Path, checkpoint: Path
) -> None:
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu", precision="32")
    records = discover(dataset).records
    state, panels = evaluate_with_panels(predictor, records, predictor.config, instances=True)
    html = write_report(tmp_path / "report.html", evaluation_content("test", state, panels, predictor.config)).read_text()
    rows = OBJECT_ROW.findall(html)
    scores = [float(dsb) for dsb, _, _ in rows]
    assert len(rows) == len(records) and scores == sorted(scores)  # worst objects first
    by_name = {image["name"]: image for image in state.images}
    assert sorted((int(split), int(merged)) for _, split, merged in rows) == sorted(
        (image["split_objects"], image["merged_objects"]) for image in by_name.values())
    assert len(embedded_pictures(html)) == 5 * len(records)  # image, truth, prediction, errors, objects
    assert 'id="objects"' in html and "AJI" in html and "merged" in html


def test_object_outlines_colour_each_object_by_what_became_of_it() -> None:
    true = np.zeros((12, 30), np.int32)
    true[2:10, 2:8], true[2:10, 8:14], true[2:10, 20:28] = 1, 2, 3  # a touching pair, and one alone
    predicted = np.zeros_like(true)
    predicted[2:10, 2:14] = 5  # the pair merged; object 3 missed
    predicted[0:2, 26:30] = 6  # invented
    painted = object_outlines(np.zeros((12, 30, 3), np.uint8), predicted, true)
    assert tuple(painted[2, 5]) == OBJECT_COLOURS["merged"] and tuple(painted[2, 22]) == OBJECT_COLOURS["missed"]
    assert tuple(painted[1, 27]) == OBJECT_COLOURS["invented"] and not painted[5, 5].any()  # inside stays as it was


def test_run_report_has_curves_config_and_the_validation_images(run: Path, tmp_path: Path) -> None:
    assert main(["report", str(run), "--out", str(tmp_path / "run.html"), "--device", "cpu"]) == 0
    html = (tmp_path / "run.html").read_text()
    assert len(ROW.findall(html)) == 2  # split.json's two validation images
    assert 'id="curves"' in html and "base_width: 4" in html
    assert len(embedded_pictures(html)) == 5 * 2 + 1  # the data has instances: the objects picture too


def test_run_report_without_its_data_still_shows_curves_and_says_why(run: Path, tmp_path: Path) -> None:
    (run / "split.json").unlink()
    content = run_content(run, device="cpu")
    assert content.evaluation is None and content.metrics and "split.json: missing" in content.notes[0]


def test_json_report_with_and_without_pictures(tmp_path: Path, dataset: Path, checkpoint: Path) -> None:
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(dataset), "--json", str(tmp_path / "e.json"),
                 "--report", str(tmp_path / "direct.html"), "--device", "cpu", "--precision", "32"]) == 0  # fmt: skip
    direct = (tmp_path / "direct.html").read_text()
    assert len(ROW.findall(direct)) == 5 and len(embedded_pictures(direct)) == 20

    assert main(["report", str(tmp_path / "e.json"), "--out", str(tmp_path / "plain.html")]) == 0
    plain = (tmp_path / "plain.html").read_text()
    assert ROW.findall(plain) == [(dice, "") for dice, _ in ROW.findall(direct)] and not embedded_pictures(plain)

    relative = Path(os.path.relpath(dataset))  # the data named otherwise than in the JSON
    content = json_content(tmp_path / "e.json", checkpoint, relative, device="cpu", precision="32")  # as evaluated
    assert len(content.panels) == 5 and content.confusion is not None
    html = write_report(tmp_path / "pictures.html", content).read_text()
    assert ROW.findall(html) == ROW.findall(direct) and len(embedded_pictures(html)) == 20


def test_report_of_a_file_that_is_no_evaluation_names_it(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(DataError, match=r"x\.json: not an evaluation of `unetkit evaluate --json`"):
        json_content(tmp_path / "x.json")
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r.html")]) == 2
