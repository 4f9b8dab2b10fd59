"""The speed probe on a tiny U-Net: a real measurement, and the caller's random stream untouched."""

from __future__ import annotations

import dataclasses
import math

import torch

from unetkit.config import UNetConfig
from unetkit.planning.probe import available_memory, widened
from unetkit.training.speed import measure_steps_per_second

TINY = UNetConfig(in_channels=1, classes=1, depth=2, base_width=4, norm="instance")


def test_the_probe_measures_training_steps_and_leaves_the_random_stream_alone() -> None:
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    rate = measure_steps_per_second(TINY, patch=32, batch=2, device=torch.device("cpu"), dtype=None)
    assert math.isfinite(rate) and rate > 0
    assert torch.equal(torch.rand(3), expected)


def test_a_wider_network_is_measured_slower() -> None:
    narrow = measure_steps_per_second(TINY, 64, 2, torch.device("cpu"), None)
    wide = measure_steps_per_second(widened(TINY, 64), 64, 2, torch.device("cpu"), None)  # 256x the arithmetic
    assert wide < narrow


def test_available_memory_is_the_machines_free_ram_on_a_cpu() -> None:
    assert 2**20 < available_memory(torch.device("cpu")) < 2**50


def test_a_valid_padding_network_is_timed_against_targets_of_its_output_size() -> None:
    valid = dataclasses.replace(TINY, padding="valid")  # depth 2: a 44 px input gives 4 px of output
    assert measure_steps_per_second(valid, patch=44, batch=1, device=torch.device("cpu"), dtype=None) > 0
