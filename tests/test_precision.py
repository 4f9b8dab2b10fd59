"""--precision auto decides by measuring this machine (a fake probe here, except once), caches the
result per machine, torch version and widths, and never overrides an explicit choice."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from unetkit.device import cache, precision, probe, resolve_precision
from unetkit.device.probe import ProbeResult
from unetkit.errors import ConfigError

CPU = torch.device("cpu")
WIDTHS = (4, 8, 16)


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """An empty cache folder and nothing resolved yet in this process."""
    monkeypatch.setenv(cache.CACHE_DIR_VARIABLE, str(tmp_path))
    monkeypatch.setattr(precision, "_measured", {})
    return tmp_path


def fake_probe(monkeypatch, bf16_speedup: float) -> list[tuple[int, ...]]:
    """The probe reports ``bf16_speedup``; returns the widths it was called with."""
    calls: list[tuple[int, ...]] = []

    def measure(widths):
        calls.append(tuple(widths))
        return ProbeResult(float32_seconds=bf16_speedup, bfloat16_seconds=1.0)

    monkeypatch.setattr(probe, "measure_cpu_precisions", measure)
    return calls


def forget_this_process(monkeypatch) -> None:
    monkeypatch.setattr(precision, "_measured", {})


@pytest.mark.parametrize(
    ("speedup", "dtype", "name", "reason"),
    [
        (2.5, torch.bfloat16, "bf16", "measured 2.5x as fast as float32 on this CPU"),
        (1 / 1.6, None, "32", "bfloat16 measured 1.6x slower on this CPU"),
        (1.02, None, "32", "bfloat16 measured within 5 % of it on this CPU"),
    ],
)
def test_auto_takes_what_the_probe_measured_faster_and_says_why(fresh, monkeypatch, caplog, speedup, dtype, name, reason):
    calls = fake_probe(monkeypatch, speedup)
    with caplog.at_level(logging.INFO, logger="unetkit.device"):
        choice = resolve_precision(CPU, "auto", WIDTHS)
        again = resolve_precision(CPU, "auto", WIDTHS)
    assert (choice.dtype, choice.name, choice.reason) == (dtype, name, reason)
    assert choice.bf16_speedup == pytest.approx(speedup)
    assert again == choice and calls == [WIDTHS]
    assert caplog.messages == [f"precision: {'bfloat16' if dtype else 'float32'} ({reason})"]


def test_a_later_process_reads_the_cache_instead_of_probing(fresh, monkeypatch):
    fake_probe(monkeypatch, 3.0)
    first = resolve_precision(CPU, "auto", WIDTHS)
    forget_this_process(monkeypatch)
    calls = fake_probe(monkeypatch, 0.5)
    assert resolve_precision(CPU, "auto", WIDTHS) == first and calls == []
    entry = next(iter(json.loads((fresh / cache.CACHE_FILE).read_text()).values()))
    assert entry["bf16_speedup"] == 3.0 and entry["machine"]["widths"] == list(WIDTHS)


@pytest.mark.parametrize("change", ["torch", "widths", "mask"])
def test_a_cached_result_for_another_torch_widths_or_cpu_mask_is_not_used(fresh, monkeypatch, change):
    for name in cache.CAPABILITY_MASKS:  # the suite also runs masked (.ci/run): AVX512_CORE must be another mask
        monkeypatch.delenv(name, raising=False)
    fake_probe(monkeypatch, 3.0)
    with monkeypatch.context() as other:
        if change == "torch":
            other.setattr(torch, "__version__", "2.0.0")
        if change == "mask":
            other.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")
        resolve_precision(CPU, "auto", (8, 16, 32) if change == "widths" else WIDTHS)
    forget_this_process(monkeypatch)
    calls = fake_probe(monkeypatch, 0.5)
    assert resolve_precision(CPU, "auto", WIDTHS).dtype is None and calls == [WIDTHS]


def test_an_unreadable_cache_is_measured_again_and_replaced(fresh, monkeypatch, caplog):
    (fresh / cache.CACHE_FILE).write_text("{not json")
    calls = fake_probe(monkeypatch, 3.0)
    with caplog.at_level(logging.WARNING, logger="unetkit.device"):
        assert resolve_precision(CPU, "auto", WIDTHS).dtype == torch.bfloat16
    assert calls == [WIDTHS] and "unreadable precision cache" in caplog.text
    assert len(json.loads((fresh / cache.CACHE_FILE).read_text())) == 1


@pytest.mark.parametrize(
    ("requested", "dtype", "warns"),
    [("32", None, False), ("bf16", torch.bfloat16, False), ("fp16", torch.bfloat16, True)],
)
def test_an_explicit_precision_wins_without_probing(fresh, monkeypatch, caplog, requested, dtype, warns):
    calls = fake_probe(monkeypatch, 0.5 if dtype else 3.0)  # the probe would choose otherwise
    with caplog.at_level(logging.WARNING, logger="unetkit.device"):
        assert resolve_precision(CPU, requested, WIDTHS).dtype == dtype
    assert calls == [] and ("for GPUs" in caplog.text) == warns


def test_an_unknown_precision_is_a_config_error(fresh):
    with pytest.raises(ConfigError, match="--precision 16: choose auto, 32, bf16 or fp16"):
        resolve_precision(CPU, "16", WIDTHS)


@pytest.mark.parametrize(
    ("has_bf16", "requested", "dtype"),
    [(True, "auto", torch.bfloat16), (False, "auto", torch.float16), (False, "bf16", torch.float16), (True, "fp16", torch.float16)],
)
def test_gpus_keep_bfloat16_where_supported_else_float16(fresh, monkeypatch, has_bf16, requested, dtype):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: has_bf16)
    calls = fake_probe(monkeypatch, 0.5)
    assert resolve_precision(torch.device("cuda"), requested, WIDTHS).dtype == dtype and calls == []


def test_the_real_probe_measures_both_dtypes_and_leaves_the_random_stream_alone(fresh):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    choice = resolve_precision(CPU, "auto", WIDTHS)
    assert torch.equal(torch.rand(3), expected)
    assert (choice.name, choice.dtype) in {("32", None), ("bf16", torch.bfloat16)}
    assert "on this CPU" in choice.reason
    entry = next(iter(json.loads((fresh / cache.CACHE_FILE).read_text()).values()))
    assert entry["bf16_speedup"] > 0 and entry["machine"]["torch"] == torch.__version__


def test_the_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(cache.CACHE_DIR_VARIABLE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "unetkit"
    monkeypatch.setenv(cache.CACHE_DIR_VARIABLE, str(tmp_path / "own"))
    assert cache.cache_dir() == tmp_path / "own"
