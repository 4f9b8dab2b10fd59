"""report.html in headless Chromium: the table sorts, a row opens its four pictures, they load."""

from __future__ import annotations

from pathlib import Path

import pytest
from serve.web_helpers import chromium_page, save_screenshot

from unetkit.data.layouts import discover
from unetkit.inference.predictor import Predictor
from unetkit.report.html import write_report
from unetkit.report.sources import evaluate_with_panels, evaluation_content

pytestmark = pytest.mark.browser


def column(page, key: str) -> list[float]:
    return page.eval_on_selector_all("#images tbody.image", f"bodies => bodies.map(b => Number(b.dataset.{key}))")


def test_report_sorts_and_its_pictures_load(tmp_path: Path, dataset: Path, checkpoint: Path) -> None:
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu", precision="32")
    state, panels = evaluate_with_panels(predictor, discover(dataset).records, predictor.config)
    report = write_report(tmp_path / "report.html", evaluation_content("tiny model", state, panels, predictor.config))

    with chromium_page(report.as_uri()) as page:
        worst_first = column(page, "dice")
        assert worst_first == sorted(worst_first) and len(worst_first) == 5
        page.click("th[data-key=dice]")
        assert column(page, "dice") == sorted(worst_first, reverse=True)
        page.click("th[data-key=errors]")
        errors = column(page, "errors")
        assert errors == sorted(errors, reverse=True) and errors[0] > 0
        page.click("#images tbody.image >> nth=0 >> tr.image-row")
        pictures = page.locator("#images tbody.image >> nth=0 >> tr.panel-row img")
        assert pictures.count() == 4 and all(pictures.nth(index).is_visible() for index in range(4))
        sizes = pictures.evaluate_all("images => images.map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
        assert sizes == [[True, 48, 48]] * 4
        save_screenshot(page, "report.png")
