"""What the plan reads of the machine besides its speed (``training.speed`` times the steps):
the memory free for training, and the network at each candidate width."""

from __future__ import annotations

import dataclasses
import os

import torch

from unetkit.config import UNetConfig


def widened(model: UNetConfig, width: int) -> UNetConfig:
    return dataclasses.replace(model, base_width=width)


def available_memory(device: torch.device) -> int:
    """Bytes free for training now: the GPU's free memory, or the machine's available RAM."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
