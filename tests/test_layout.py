"""The memory layout ``auto`` times the caller's own work in both layouts (fake timings here), for
training and for inference apart, caches the result per machine as the precision's is, and never
overrides an explicit choice; old checkpoints (a bool ``train.channels_last``) keep loading."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from unetkit.checkpoint import FORMAT, VERSION
from unetkit.cli import build_parser
from unetkit.cli.infer import INFERENCE_FLAGS
from unetkit.cli.options import given_settings
from unetkit.config import Config
from unetkit.device import cache, resolve_execution, resolve_layout
from unetkit.device.distributed import DistributedContext
from unetkit.device.layout import LayoutTiming, choice_for_speedup
from unetkit.errors import ConfigError
from unetkit.inference import networks
from unetkit.inference.predictor import Predictor
from unetkit.model import UNet
from unetkit.planning.policy import configured
from unetkit.training import speed
from unetkit.training.step import build_components
from precision_helpers import fresh_cache, fresh_precision

CPU = torch.device("cpu")
SUBJECT = {"kind": "training step", "model": {"base_width": 8}, "patch": 64, "batch": 2}


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """An empty cache folder and nothing measured yet in this process."""
    return fresh_cache(monkeypatch, tmp_path)


def tiny_config() -> Config:
    config = Config()
    config.model.in_channels, config.model.base_width, config.model.depth = 1, 4, 2
    config.predict.tile_size, config.predict.batch_size = 32, 2
    config.data.patch_size, config.train.batch_size, config.train.precision = 32, 2, "32"
    return config


def fake_training_steps(monkeypatch, contiguous_speedup: float) -> list[bool]:
    """Training steps that run ``contiguous_speedup`` times as fast contiguous; the layouts timed."""
    timed: list[bool] = []

    def steps_per_second(model, patch, batch, device, dtype, channels_last=True):  # noqa: ANN001, ANN202
        timed.append(channels_last)
        return 4.0 * (1.0 if channels_last else contiguous_speedup)

    monkeypatch.setattr(speed, "measure_steps_per_second", steps_per_second)
    return timed


def fake_forward_passes(monkeypatch, contiguous_speedup: float) -> list[bool]:
    """The predictor's forward passes, ``contiguous_speedup`` times as fast contiguous."""
    timed: list[bool] = []

    def forward_rate(self, input_shape, dtype, channels_last):  # noqa: ANN001, ANN202
        timed.append(channels_last)
        return 5.0 * (1.0 if channels_last else contiguous_speedup)

    monkeypatch.setattr(networks.TorchNetwork, "_forward_rate", forward_rate)
    return timed


@pytest.mark.parametrize(
    ("speedup", "channels_last", "reason"),
    [
        (1.3, False, "the training step measured 1.30x as fast contiguous as channels-last on this CPU"),
        (1.06, False, "the training step measured 1.06x as fast contiguous as channels-last on this CPU"),
        (1.04, True, "the training step measured within 5 % contiguous on this CPU"),
        (0.5, True, "the training step measured 2.00x as fast channels-last as contiguous on this CPU"),
    ],
)
def test_contiguous_only_where_it_measured_clearly_faster(speedup: float, channels_last: bool, reason: str) -> None:
    choice = choice_for_speedup(speedup, "training step")
    assert (choice.channels_last, choice.reason, choice.contiguous_speedup) == (channels_last, reason, speedup)


def test_auto_keeps_the_faster_layout_measured_once_and_logged_once(fresh, caplog) -> None:
    timed: list[bool] = []

    def rate(channels_last: bool) -> float:
        timed.append(channels_last)
        return 2.0 if channels_last else 3.0

    with caplog.at_level(logging.INFO, logger="unetkit.device"):
        choice = resolve_layout(CPU, "auto", LayoutTiming(SUBJECT, rate))
        again = resolve_layout(CPU, "auto", LayoutTiming(SUBJECT, rate))
    assert choice == again and choice.name == "contiguous" and sorted(timed) == [False, True]
    assert caplog.messages == [f"memory layout: {choice}"]


def test_training_and_inference_each_take_the_layout_their_own_work_ran_faster_in(fresh, monkeypatch) -> None:
    """On the issue's AVX2 EPYC channels-last slowed training and sped up inference."""
    timed_steps = fake_training_steps(monkeypatch, contiguous_speedup=1.8)
    timed_passes = fake_forward_passes(monkeypatch, contiguous_speedup=0.7)
    config = tiny_config()
    parts = build_components(config, DistributedContext())
    predictor = Predictor(UNet(config.model), config, precision="32")
    assert parts.layout.name == "contiguous" and "training step measured 1.80x" in parts.layout.reason
    assert parts.model.encoder[0][1][0].weight.is_contiguous()
    assert predictor.network.format == torch.channels_last and predictor.network.execution.layout.name == "channels-last"
    assert sorted(timed_steps) == sorted(timed_passes) == [False, True]


def test_a_later_process_reads_both_layouts_from_the_cache(fresh, monkeypatch) -> None:
    fake_training_steps(monkeypatch, 1.8)
    fake_forward_passes(monkeypatch, 0.7)
    config = tiny_config()
    build_components(config, DistributedContext())
    Predictor(UNet(config.model), config, precision="32")
    monkeypatch.setattr(cache, "_measured", {})  # a new process, same machine
    timed_steps, timed_passes = fake_training_steps(monkeypatch, 0.5), fake_forward_passes(monkeypatch, 2.0)
    assert build_components(config, DistributedContext()).layout.name == "contiguous"
    assert Predictor(UNet(config.model), config, precision="32").network.format == torch.channels_last
    assert timed_steps == timed_passes == []
    entries = json.loads((fresh / cache.CACHE_FILE).read_text()).values()
    assert sorted(entry["machine"]["subject"]["kind"] for entry in entries) == ["inference forward pass", "training step"]
    assert all(entry["contiguous_speedup"] > 0 for entry in entries)


@pytest.mark.parametrize("layout", ["channels-last", "contiguous"])
def test_a_layout_you_set_is_not_measured(fresh, monkeypatch, layout: str) -> None:
    timed_steps, timed_passes = fake_training_steps(monkeypatch, 1.8), fake_forward_passes(monkeypatch, 1.8)
    config = tiny_config()
    config.train.memory_layout = config.predict.memory_layout = layout
    assert build_components(config, DistributedContext()).layout.name == layout
    assert Predictor(UNet(config.model), config, precision="32").network.execution.layout.name == layout
    assert timed_steps == timed_passes == []


def test_gpus_take_channels_last_and_volumes_contiguous_untimed(fresh) -> None:
    never = LayoutTiming(SUBJECT, lambda channels_last: pytest.fail("timed"))
    assert resolve_layout(torch.device("cuda"), "auto", never).name == "channels-last"
    assert resolve_layout(CPU, "auto", never, dims=3).name == "contiguous"
    with pytest.raises(ConfigError, match="choose auto, channels-last or contiguous"):
        resolve_layout(CPU, "nhwc")


def test_layout_and_precision_together_time_each_setting_once(monkeypatch, tmp_path) -> None:
    """With bfloat16 units both are auto: each layout in both dtypes, the layouts compared at their
    own dtype's speed without timing again."""
    fresh_precision(monkeypatch, tmp_path)
    timed: list[tuple[torch.dtype | None, bool]] = []

    def rate(dtype: torch.dtype | None, channels_last: bool) -> float:
        timed.append((dtype, channels_last))
        return {(None, True): 4.0, (torch.bfloat16, True): 2.0, (None, False): 3.0, (torch.bfloat16, False): 6.0}[
            dtype, channels_last
        ]

    subject = lambda channels_last: {**SUBJECT, "channels_last": channels_last}  # noqa: E731
    chosen = resolve_execution(CPU, "auto", "auto", rate, subject)
    assert (chosen.layout.name, chosen.precision.name) == ("contiguous", "bf16")  # 6 against channels-last's 4
    assert sorted(timed, key=str) == sorted([(None, True), (torch.bfloat16, True), (None, False), (torch.bfloat16, False)], key=str)


def test_a_layout_you_set_has_its_precision_timed_in_it_alone(monkeypatch, tmp_path) -> None:
    fresh_precision(monkeypatch, tmp_path)
    timed: list[tuple[torch.dtype | None, bool]] = []
    rate = lambda dtype, channels_last: timed.append((dtype, channels_last)) or 1.0  # noqa: E731
    subject = lambda channels_last: {**SUBJECT, "channels_last": channels_last}  # noqa: E731
    assert resolve_execution(CPU, "auto", "contiguous", rate, subject).layout.name == "contiguous"
    assert sorted(timed, key=str) == [(None, False), (torch.bfloat16, False)]


def test_precisions_that_run_the_same_dtype_share_one_layout_measurement(fresh, monkeypatch) -> None:
    """Without bfloat16 units auto and 32 both run float32: the layouts are timed once for both."""
    timed: list[bool] = []
    rate = lambda dtype, channels_last: timed.append(channels_last) or 1.0  # noqa: E731
    subject = lambda channels_last: {**SUBJECT, "channels_last": channels_last}  # noqa: E731
    monkeypatch.setattr(cache, "cpuinfo", lambda: ("an AVX2 CPU", "fpu sse2 avx2"))
    for precision in ("auto", "32"):
        resolve_execution(CPU, precision, "auto", rate, subject)
    assert sorted(timed) == [False, True]


def test_an_old_checkpoint_with_a_bool_channels_last_still_loads(fresh, monkeypatch, tmp_path) -> None:
    timed = fake_forward_passes(monkeypatch, 1.5)
    config = tiny_config()
    old = config.to_dict()
    del old["train"]["memory_layout"], old["train"]["layout_chosen"], old["predict"]["memory_layout"]
    old["train"]["channels_last"] = True
    path = tmp_path / "old.pt"
    torch.save({"format": FORMAT, "version": VERSION, "config": old, "model": UNet(config.model).state_dict()}, path)
    predictor = Predictor.from_checkpoint(path, "cpu", precision="32")
    assert predictor.config.train.memory_layout == "channels-last"  # what the run trained in
    assert predictor.network.format == torch.contiguous_format and timed  # inference measured its own
    assert Config.from_dict({"train": {"channels_last": False}}).train.memory_layout == "contiguous"


@pytest.mark.parametrize(
    ("flags", "train_layout", "predict_layout"),
    [
        ([], "auto", "auto"),
        (["--memory-layout", "contiguous"], "contiguous", "auto"),
        (["--inference-memory-layout", "channels-last"], "auto", "channels-last"),
        (["--no-channels-last"], "contiguous", "auto"),
        (["--channels-last"], "channels-last", "auto"),
    ],
)
def test_the_flags_set_training_and_inference_layouts_apart(tmp_path, flags, train_layout, predict_layout) -> None:
    args = build_parser().parse_args(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), *flags])
    config = configured(args.data, given_settings(args))
    assert (config.train.memory_layout, config.predict.memory_layout) == (train_layout, predict_layout)


def test_predict_takes_the_inference_layout_flag(tmp_path) -> None:
    argv = ["predict", "--checkpoint", "best.pt", str(tmp_path), "--out", str(tmp_path), "--inference-memory-layout", "contiguous"]
    args = build_parser().parse_args(argv)
    assert given_settings(args, INFERENCE_FLAGS)["predict.memory_layout"] == "contiguous"
