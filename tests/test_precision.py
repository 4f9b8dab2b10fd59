"""--precision auto times the caller's own work in float32 and bfloat16 (fake timings here, except
once), caches the result per machine, torch version and subject, keeps training and inference
apart, and never overrides an explicit choice."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from unetkit.config import Config
from unetkit.device import Timing, cache, resolve_precision
from unetkit.errors import ConfigError
from unetkit.inference import networks
from unetkit.inference.predictor import Predictor
from unetkit.model import UNet
from unetkit.training import speed
from unetkit.device.distributed import DistributedContext
from unetkit.training.step import build_components
from precision_helpers import BF16_CPU, fresh_precision

CPU = torch.device("cpu")
SUBJECT = {"kind": "training step", "model": {"base_width": 8}, "patch": 64, "batch": 2, "channels_last": True}


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """An empty cache folder, nothing resolved yet in this process, a CPU with bfloat16 units."""
    return fresh_precision(monkeypatch, tmp_path)


def forget_this_process(monkeypatch) -> None:
    monkeypatch.setattr(cache, "_measured", {})


def fake_timing(bf16_speedup: float, subject: dict = SUBJECT) -> tuple[Timing, list[torch.dtype | None]]:
    """Work that runs ``bf16_speedup`` times as fast in bfloat16; and the dtypes it was timed in."""
    calls: list[torch.dtype | None] = []

    def rate(dtype: torch.dtype | None) -> float:
        calls.append(dtype)
        return 10.0 * (bf16_speedup if dtype == torch.bfloat16 else 1.0)

    return Timing(subject, rate), calls


@pytest.mark.parametrize(
    ("speedup", "dtype", "name", "reason"),
    [
        (2.5, torch.bfloat16, "bf16", "the training step measured 2.5x as fast as in float32 on this CPU"),
        (1 / 1.6, None, "32", "the training step in bfloat16 measured 1.6x slower on this CPU"),
        (1.02, None, "32", "the training step in bfloat16 measured within 5 % of it on this CPU"),
    ],
)
def test_auto_takes_the_dtype_the_work_ran_faster_in_and_says_why(fresh, caplog, speedup, dtype, name, reason):
    timing, calls = fake_timing(speedup)
    with caplog.at_level(logging.INFO, logger="unetkit.device"):
        choice = resolve_precision(CPU, "auto", timing)
        again = resolve_precision(CPU, "auto", timing)
    assert (choice.dtype, choice.name, choice.reason) == (dtype, name, reason)
    assert choice.bf16_speedup == pytest.approx(speedup)
    assert again == choice and sorted(calls, key=str) == [None, torch.bfloat16]  # timed once in each dtype
    assert caplog.messages == [f"precision: {'bfloat16' if dtype else 'float32'} ({reason})"]


def test_a_later_process_reads_the_cache_instead_of_timing(fresh, monkeypatch):
    first = resolve_precision(CPU, "auto", fake_timing(3.0)[0])
    forget_this_process(monkeypatch)
    timing, calls = fake_timing(0.5)
    assert resolve_precision(CPU, "auto", timing) == first and calls == []
    entry = next(iter(json.loads((fresh / cache.CACHE_FILE).read_text()).values()))
    assert entry["bf16_speedup"] == 3.0 and entry["machine"]["subject"] == SUBJECT


OTHER_SUBJECTS = {"kind": {"kind": "inference forward pass"}, "layout": {"channels_last": False}, "batch": {"batch": 4}}


@pytest.mark.parametrize("change", ["torch", "mask", *OTHER_SUBJECTS])
def test_a_cached_result_for_another_torch_cpu_mask_or_subject_is_not_used(fresh, monkeypatch, change):
    subject = {**SUBJECT, **OTHER_SUBJECTS.get(change, {})}
    with monkeypatch.context() as other:
        if change == "torch":
            other.setattr(torch, "__version__", "2.0.0")
        if change == "mask":
            other.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
        resolve_precision(CPU, "auto", fake_timing(3.0, subject)[0])
    forget_this_process(monkeypatch)
    timing, calls = fake_timing(0.5)
    assert resolve_precision(CPU, "auto", timing).dtype is None and len(calls) == 2


def test_an_unreadable_cache_is_measured_again_and_replaced(fresh, caplog):
    (fresh / cache.CACHE_FILE).write_text("{not json")
    timing, calls = fake_timing(3.0)
    with caplog.at_level(logging.WARNING, logger="unetkit.device"):
        assert resolve_precision(CPU, "auto", timing).dtype == torch.bfloat16
    assert len(calls) == 2 and "unreadable precision cache" in caplog.text
    assert len(json.loads((fresh / cache.CACHE_FILE).read_text())) == 1


@pytest.mark.parametrize(
    ("requested", "dtype", "warns"),
    [("32", None, False), ("bf16", torch.bfloat16, False), ("fp16", torch.bfloat16, True)],
)
def test_an_explicit_precision_wins_without_timing(fresh, caplog, requested, dtype, warns):
    timing, calls = fake_timing(0.5 if dtype else 3.0)  # the timing would choose otherwise
    with caplog.at_level(logging.WARNING, logger="unetkit.device"):
        assert resolve_precision(CPU, requested, timing).dtype == dtype
    assert calls == [] and ("for GPUs" in caplog.text) == warns


@pytest.mark.parametrize(
    ("flags", "mask"),
    [("fpu sse2 avx2", None), ("fpu sse2 avx2 avx512f", None), (BF16_CPU[1], "AVX2"), (BF16_CPU[1], "AVX512_CORE")],
    ids=["avx2", "avx512-no-bf16", "masked-avx2", "masked-avx512"],
)
def test_a_cpu_without_bfloat16_instructions_is_float32_untimed(fresh, monkeypatch, flags, mask):
    monkeypatch.setattr(cache, "cpuinfo", lambda: ("a CPU", flags))
    if mask:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", mask)
    timing, calls = fake_timing(3.0)
    choice = resolve_precision(CPU, "auto", timing)
    assert (choice.dtype, calls) == (None, []) and "no bfloat16 instructions" in choice.reason
    assert resolve_precision(CPU, "bf16", timing).dtype == torch.bfloat16  # what you ask for, you get


@pytest.mark.parametrize(("flags", "mask"), [(BF16_CPU[1], "AVX512_CORE_BF16"), (BF16_CPU[1], "ALL"), ("", None)],
                         ids=["masked-avx512-bf16", "unmasked", "flags-unreadable"])  # fmt: skip
def test_a_cpu_with_bfloat16_instructions_or_unknown_flags_is_timed(fresh, monkeypatch, flags, mask):
    monkeypatch.setattr(cache, "cpuinfo", lambda: ("a CPU", flags))
    if mask:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", mask)
    timing, calls = fake_timing(3.0)
    assert resolve_precision(CPU, "auto", timing).dtype == torch.bfloat16 and len(calls) == 2


def test_auto_without_a_timing_is_float32(fresh):
    choice = resolve_precision(CPU, "auto")
    assert (choice.dtype, choice.name, choice.bf16_speedup) == (None, "32", None) and "nothing" in choice.reason


def test_an_unknown_precision_is_a_config_error(fresh):
    with pytest.raises(ConfigError, match="--precision 16: choose auto, 32, bf16 or fp16"):
        resolve_precision(CPU, "16")


@pytest.mark.parametrize(
    ("has_bf16", "requested", "dtype"),
    [(True, "auto", torch.bfloat16), (False, "auto", torch.float16), (False, "bf16", torch.float16), (True, "fp16", torch.float16)],
)
def test_gpus_keep_bfloat16_where_supported_else_float16(fresh, monkeypatch, has_bf16, requested, dtype):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: has_bf16)
    timing, calls = fake_timing(0.5)
    assert resolve_precision(torch.device("cuda"), requested, timing).dtype == dtype and calls == []


def tiny_config() -> Config:
    config = Config()
    config.model.in_channels, config.model.base_width, config.model.depth = 1, 4, 2
    config.predict.tile_size, config.predict.batch_size = 32, 2
    config.predict.memory_layout = "channels-last"  # the layout's own timing: tests/test_layout.py
    return config


def fake_forward(monkeypatch, bf16_speedup: float) -> list[tuple[tuple[int, ...], torch.dtype | None]]:
    """The predictor's forward passes run ``bf16_speedup`` times as fast in bfloat16; returns the
    (input shape, dtype) of every timing."""
    calls: list[tuple[tuple[int, ...], torch.dtype | None]] = []

    def forward_rate(self, input_shape, dtype, channels_last):  # noqa: ANN001, ANN202
        calls.append((tuple(input_shape), dtype))
        return 5.0 * (bf16_speedup if dtype == torch.bfloat16 else 1.0)

    monkeypatch.setattr(networks.TorchNetwork, "_forward_rate", forward_rate)
    return calls


@pytest.mark.parametrize(("speedup", "dtype"), [(2.0, torch.bfloat16), (0.5, None)])
def test_predict_times_a_forward_pass_of_its_network_at_its_tiles(fresh, monkeypatch, speedup, dtype):
    calls = fake_forward(monkeypatch, speedup)
    config = tiny_config()
    assert Predictor(UNet(config.model), config, precision="auto").network.dtype == dtype
    assert sorted(calls, key=str) == [((2, 1, 32, 32), None), ((2, 1, 32, 32), torch.bfloat16)]
    entry = next(iter(json.loads((fresh / cache.CACHE_FILE).read_text()).values()))
    assert entry["machine"]["subject"]["kind"] == "inference forward pass"


def test_training_and_inference_are_timed_separately(fresh, monkeypatch):
    """A training step that ran faster in bfloat16 says nothing of inference, which ran slower."""
    config = tiny_config()
    model = {"base_width": 4, "depth": 2}
    assert resolve_precision(CPU, "auto", fake_timing(2.0, {**SUBJECT, "model": model})[0]).dtype == torch.bfloat16
    calls = fake_forward(monkeypatch, 0.5)
    assert Predictor(UNet(config.model), config, precision="auto").network.dtype is None and len(calls) == 2
    forget_this_process(monkeypatch)
    calls = fake_forward(monkeypatch, 3.0)  # a later process: both read from the cache, each its own
    assert Predictor(UNet(config.model), config, precision="auto").network.dtype is None and calls == []
    assert resolve_precision(CPU, "auto", fake_timing(0.5, {**SUBJECT, "model": model})[0]).dtype == torch.bfloat16


def test_the_real_forward_timing_measures_both_dtypes_and_leaves_the_random_stream_alone(fresh):
    config = tiny_config()
    model = UNet(config.model)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    choice = Predictor(model, config, precision="auto").network.dtype
    assert torch.equal(torch.rand(3), expected) and choice in (None, torch.bfloat16)
    entry = next(iter(json.loads((fresh / cache.CACHE_FILE).read_text()).values()))
    assert entry["bf16_speedup"] > 0 and entry["machine"]["torch"] == torch.__version__
    assert entry["machine"]["subject"]["input"] == [2, 1, 32, 32] and entry["machine"]["subject"]["model"]["base_width"] == 4


def test_a_run_without_a_plan_times_its_own_training_step(fresh, monkeypatch):
    steps: list[tuple] = []

    def fake_steps_per_second(model, patch, batch, device, dtype, channels_last=True):  # noqa: ANN001, ANN202
        steps.append((model.base_width, patch, batch, dtype, channels_last))
        return 2.0 if dtype == torch.bfloat16 else 1.0

    monkeypatch.setattr(speed, "measure_steps_per_second", fake_steps_per_second)
    config = tiny_config()
    config.data.patch_size, config.train.batch_size, config.train.memory_layout = 48, 3, "contiguous"
    parts = build_components(config, DistributedContext())
    assert parts.dtype == torch.bfloat16 and parts.precision.startswith("bfloat16 (the training step")
    assert config.train.precision_chosen == ""  # the step reports what it measured; the trainer records it
    assert sorted(steps, key=str) == [(4, 48, 3, None, False), (4, 48, 3, torch.bfloat16, False)]


def test_the_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(cache.CACHE_DIR_VARIABLE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "unetkit"
    monkeypatch.setenv(cache.CACHE_DIR_VARIABLE, str(tmp_path / "own"))
    assert cache.cache_dir() == tmp_path / "own"
