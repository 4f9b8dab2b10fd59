"""make_plan end to end on generated data (fake probe), unetkit plan through the CLI (a real probe
of the narrowest width on 64 px patches), and plans for the published samples (slow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import precision_helpers
import yaml
from sample_data import SAMPLE_DATA, needs_sample

from unetkit.cli import main
from unetkit.config import Config
from unetkit.data.synthetic import generate_dataset, make_sample
from unetkit.device import cache
from unetkit.device.layout import LAYOUT_NAMES
from unetkit.inference import networks
from unetkit.inference.predictor import Predictor
from unetkit.model import UNet
from unetkit.planning.plan import format_plan, make_plan
from unetkit.planning.plan import SET_BY_YOU, Plan
from unetkit.data.prepare import prepare_data

CPU = torch.device("cpu")


def fake_speed(model, patch: int, batch: int, device: torch.device, dtype, channels_last: bool = True) -> float:
    """Steps per second falling with the width as a real U-Net's do; both layouts alike."""
    return 320.0 / model.base_width


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("blobs"), n_images=12, size=64, seed=0)


def plan_for(path: Path, budget: float = 600, fixed: dict | None = None, speed=fake_speed) -> Plan:  # noqa: ANN001
    config = Config()
    config.data.path = str(path)
    return make_plan(prepare_data(config, None, None), budget_seconds=budget, device=CPU, fixed=fixed or {}, speed=speed)


def test_plan_for_generated_blobs_is_a_complete_config_with_a_reason_for_every_choice(blobs: Path) -> None:
    plan = plan_for(blobs)
    config = plan.config
    assert (config.data.patch_size, config.model.depth, config.predict.tile_size) == (64, 3, 64)
    assert config.model.norm == "instance" and config.model.instance_target == "core+border"  # touching blobs, instances given
    assert not config.data.weight_map  # the maps keep them apart
    assert plan.fingerprint.objects.source == "instances" and plan.fingerprint.objects.touching > 0.1
    assert config.model.base_width == 32 and config.train.steps == int(10 * 480)  # 320/32 steps/s x 480 s
    assert config.train.time == 600.0 and config.train.batch_size == 32
    normalize = config.data.normalize  # contrast 0.12, steady brightness: the dataset's statistics, filled in
    assert normalize.mode == "meanstd" and normalize.mean == plan.fingerprint.mean and normalize.std == plan.fingerprint.std
    assert all(choice.reason for choice in plan.choices)
    table = format_plan(plan)
    assert all(choice.path in table for choice in plan.choices)


def test_values_you_set_are_kept_and_the_rest_follows_them(blobs: Path) -> None:
    plan = plan_for(blobs, fixed={"data.patch_size": 32, "model.base_width": 8, "model.norm": "batch"})
    reasons = {choice.path: choice.reason for choice in plan.choices}
    assert (plan.config.data.patch_size, plan.config.model.base_width, plan.config.model.norm) == (32, 8, "batch")
    assert reasons["data.patch_size"] == reasons["model.base_width"] == reasons["model.norm"] == SET_BY_YOU
    assert plan.config.model.depth == 2 and plan.config.predict.tile_size == 32  # derived from your patch
    assert plan.measured == {8: 40.0}  # only the width you set is measured


def slow_speed(model, patch: int, batch: int, device: torch.device, dtype, channels_last: bool = True) -> float:
    """A machine where even width 8 at the planned batch of 32 makes only 75 steps in 480 s."""
    return 40.0 / (model.base_width * batch)


def test_a_budget_too_short_for_the_steps_wanted_trains_with_the_smallest_batch(blobs: Path) -> None:
    plan = plan_for(blobs, speed=slow_speed)
    reasons = {choice.path: choice.reason for choice in plan.choices}
    assert plan.config.train.batch_size == 2 and "75 optimizer steps" in reasons["train.batch_size"]
    assert plan.config.model.base_width == 8 and plan.config.train.steps == 1200  # 40 / 16 steps/s x 480 s
    assert plan.measured == {8: 2.5}


def test_a_batch_you_set_is_kept_even_when_steps_fall_short(blobs: Path) -> None:
    plan = plan_for(blobs, fixed={"train.batch_size": 32}, speed=slow_speed)
    assert plan.config.train.batch_size == 32 and plan.config.train.steps == 75


def contiguous_faster(model, patch: int, batch: int, device: torch.device, dtype, channels_last: bool = True) -> float:
    """A CPU where the planned step runs 1.25x as fast with contiguous tensors."""
    return fake_speed(model, patch, batch, device, dtype) * (1.0 if channels_last else 1.25)


@pytest.fixture(autouse=True)
def fresh_measurements(monkeypatch, tmp_path: Path) -> Path:
    """Each test's fake speeds are measured anew: the layout's timing is cached on every CPU."""
    return precision_helpers.fresh_cache(monkeypatch, tmp_path / "measurements")


def test_the_layout_that_measured_faster_is_planned_and_its_speed_sets_the_steps(blobs: Path, monkeypatch) -> None:
    same = plan_for(blobs)
    precision_helpers.fresh_cache(monkeypatch, blobs.parent / "another-machine")
    faster = plan_for(blobs, speed=contiguous_faster)
    assert (same.config.train.memory_layout, faster.config.train.memory_layout) == ("channels-last", "contiguous")
    assert same.config.model.base_width == faster.config.model.base_width == 32
    assert faster.config.train.steps == round(1.25 * same.config.train.steps)  # 10 -> 12.5 steps/s, 480 s
    reason = {choice.path: choice.reason for choice in faster.choices}["train.memory_layout"]
    assert "the training step measured 1.25x as fast contiguous as channels-last" in reason
    assert "width 32, 32 x 64^2 px, contiguous" in reason


def test_a_later_plan_reads_the_cached_layout_and_times_only_its_steps(blobs: Path) -> None:
    first = plan_for(blobs, speed=contiguous_faster)
    layouts: list[bool] = []

    def recording(*args, channels_last: bool = True) -> float:  # noqa: ANN002
        layouts.append(channels_last)
        return contiguous_faster(*args, channels_last=channels_last)

    again = plan_for(blobs, speed=recording)  # the same process; a new one reads the file (tests/test_layout.py)
    assert again.config.train == first.config.train and again.config.train.memory_layout == "contiguous"
    assert False not in layouts[:-1] and layouts[-1] is False  # widths channels-last, then the chosen pair's speed


def test_a_layout_you_set_is_the_one_measured(blobs: Path) -> None:
    layouts: list[bool] = []

    def recording(*args, channels_last: bool = True) -> float:  # noqa: ANN002
        layouts.append(channels_last)
        return contiguous_faster(*args, channels_last=channels_last)

    for fixed, channels_last in (("channels-last", True), ("contiguous", False)):
        layouts.clear()
        plan = plan_for(blobs, fixed={"train.memory_layout": fixed}, speed=recording)
        assert set(layouts) == {channels_last} and plan.config.train.memory_layout == fixed
        assert {c.path: c.reason for c in plan.choices}["train.memory_layout"] == SET_BY_YOU
        assert plan.config.train.steps == int((12.5 if not channels_last else 10.0) * 480)


def amx_like(model, patch: int, batch: int, device: torch.device, dtype, channels_last: bool = True) -> float:
    """A CPU where bfloat16 runs the planned step 2.5x slower channels-last (instance norm) but 2x
    faster contiguous; float32 alike in both layouts."""
    if dtype != torch.bfloat16:
        return fake_speed(model, patch, batch, device, dtype)
    return fake_speed(model, patch, batch, device, dtype) * (1 / 2.5 if channels_last else 2.0)


def bf16_slower(model, patch: int, batch: int, device: torch.device, dtype, channels_last: bool = True) -> float:
    return fake_speed(model, patch, batch, device, dtype) * (0.5 if dtype == torch.bfloat16 else 1.0)


@pytest.fixture
def fresh_precision(monkeypatch, tmp_path: Path) -> Path:
    """An empty precision cache, nothing resolved yet in this process, a CPU with bfloat16 units."""
    return precision_helpers.fresh_precision(monkeypatch, tmp_path / "cache")


@pytest.mark.parametrize(
    ("speed", "dtype_name", "channels_last", "rate"),
    [(amx_like, "bf16", False, 20.0), (bf16_slower, "32", True, 10.0)],
    ids=["bf16-fast-contiguous", "bf16-slower"],
)
def test_precision_and_layout_are_chosen_together_on_the_planned_step(
    blobs: Path, fresh_precision: Path, speed, dtype_name: str, channels_last: bool, rate: float  # noqa: ANN001
) -> None:
    plan = plan_for(blobs, speed=speed)
    train = plan.config.train
    assert (train.precision, train.memory_layout) == (dtype_name, LAYOUT_NAMES[channels_last])
    assert train.steps == int(rate * 480)  # the chosen pair's speed x the training share of 600 s
    reason = {choice.path: choice.reason for choice in plan.choices}["train.precision"]
    assert "the training step" in reason and f"width 32, 32 x 64^2 px, {LAYOUT_NAMES[channels_last]}" in reason


def test_a_later_plan_reads_the_cached_bfloat16_speed_up_instead_of_timing_it(
    blobs: Path, fresh_precision: Path, monkeypatch
) -> None:
    first = plan_for(blobs, speed=amx_like)
    monkeypatch.setattr(cache, "_measured", {})  # a new process, same machine
    dtypes: list = []

    def recording(*args, **kwargs) -> float:  # noqa: ANN002, ANN003
        dtypes.append(args[4])
        return amx_like(*args, **kwargs)

    again = plan_for(blobs, speed=recording)
    assert torch.bfloat16 not in dtypes and again.config.train == first.config.train


def test_a_precision_you_set_is_the_only_one_timed(blobs: Path, fresh_precision: Path) -> None:
    dtypes: set = set()

    def recording(*args, **kwargs) -> float:  # noqa: ANN002, ANN003
        dtypes.add(args[4])
        return amx_like(*args, **kwargs)

    plan = plan_for(blobs, fixed={"train.precision": "32"}, speed=recording)
    assert dtypes == {None} and plan.config.train.precision == "32" and plan.config.train.memory_layout == "channels-last"


def test_predict_times_inference_apart_from_the_plans_training_step(blobs: Path, fresh_precision: Path, monkeypatch) -> None:
    plan = plan_for(blobs, speed=amx_like)
    assert plan.config.train.precision == "bf16"
    timed: list = []

    def slower_in_bf16(self, input_shape, dtype, channels_last) -> float:  # noqa: ANN001
        timed.append(dtype)
        return 2.0 if dtype == torch.bfloat16 else 4.0

    monkeypatch.setattr(networks.TorchNetwork, "_forward_rate", slower_in_bf16)
    predictor = Predictor(UNet(plan.config.model), plan.config, precision="auto", layout="channels-last")
    assert predictor.network.dtype is None and sorted(timed, key=str) == [None, torch.bfloat16]


def test_without_a_budget_steps_come_from_the_dataset(blobs: Path) -> None:
    plan = plan_for(blobs, budget=0)
    assert plan.config.model.base_width == 32 and plan.config.train.steps == 1000  # the minimum for 12 small images
    assert plan.config.train.time == 0.0


def test_low_contrast_touching_cells_in_the_cell_tracking_layout(tmp_path: Path) -> None:
    """The issue's DIC report (8-bit, std 0.04 after /255, touching cells): per-image z-score,
    instance norm and the border weight map, from the layout's instance labels."""
    for sequence in ("01", "02"):
        for frame in range(3):
            instances = make_sample(np.random.default_rng([int(sequence), frame]), 96)[1]
            image = 120 + 12 * (instances > 0) + np.random.default_rng(frame).normal(0, 6, instances.shape)
            for path, array in ((tmp_path / sequence / f"t{frame:03d}.tif", image.astype(np.uint8)),
                                (tmp_path / f"{sequence}_GT" / "SEG" / f"man_seg{frame:03d}.tif", instances.astype(np.uint16))):
                path.parent.mkdir(parents=True, exist_ok=True)
                tifffile.imwrite(path, array)
    plan = plan_for(tmp_path)
    assert plan.fingerprint.image_std < 0.05 and plan.fingerprint.objects.source == "instances"
    config = plan.config
    assert (config.data.layout, config.data.normalize.mode, config.model.norm) == ("ctc", "zscore", "instance")
    assert config.model.instance_target == "core+border" and not config.data.weight_map


def test_plan_yaml_holds_fingerprint_choices_and_a_loadable_config(blobs: Path) -> None:
    plan = plan_for(blobs)
    loaded = yaml.safe_load(plan.to_yaml())
    assert loaded["fingerprint"]["images"] == 12
    assert [c["path"] for c in loaded["choices"]] == [c.path for c in plan.choices]
    assert Config.from_dict(loaded["config"]) == plan.config


def test_unetkit_plan_prints_the_plan_and_writes_plan_yaml(blobs: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "plan.yaml"
    assert main(["plan", str(blobs), "--time", "30s", "--device", "cpu", "--augment", "none", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    loaded = yaml.safe_load(out.read_text())
    config = Config.from_dict(loaded["config"])
    assert config.train.time == 30.0 and config.data.augment == "none"
    assert "data.patch_size" in printed and "set by you" in printed and "fingerprint" in printed
    assert loaded["measured_steps_per_second"]  # the probe measured this machine


def _sample(name: str):  # noqa: ANN202 - a pytest param
    return pytest.param(name, marks=[pytest.mark.slow, pytest.mark.sample_data(name)])


@pytest.mark.parametrize("name", [_sample("isbi2012"), _sample("carvana"), _sample("dsb2018")])
def test_plans_for_the_published_samples_give_a_reason_for_every_choice(name: str) -> None:
    plan = plan_for(SAMPLE_DATA / name)
    assert plan.choices and all(choice.reason for choice in plan.choices)
    assert plan.fingerprint.sampled <= 16
    print(format_plan(plan))


@needs_sample("isbi2012", "carvana", "dsb2018")
def test_sample_plans_are_sensible() -> None:
    """Not tuned to them: the rules' general reasons, seen on the three kinds of data."""
    membranes, cars, nuclei = (plan_for(SAMPLE_DATA / name).config for name in ("isbi2012", "carvana", "dsb2018"))
    assert membranes.data.weight_map and membranes.data.color_augment == "none"  # cells 1-2 px apart
    assert cars.data.image_size > 0 and cars.data.color_augment == "strong" and not cars.data.weight_map
    assert nuclei.data.normalize.mode == "zscore" and nuclei.model.instance_target == "core+border"  # dark, touching
    assert membranes.model.instance_target == "none" and cars.model.instance_target == "none"  # a border class; one car
