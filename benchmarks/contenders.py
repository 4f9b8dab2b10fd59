"""The models throughput.py measures, each with the execution settings it runs under: unetkit as
its CLI would run here (the layout and precision ``auto`` resolves to, for training and for
inference apart), each reference in both memory layouts; and one training / inference step."""

from __future__ import annotations

import argparse
import copy
from dataclasses import dataclass, field

import torch
from reference_unets import REFERENCES
from torch import nn

from unetkit.config import Config, UNetConfig
from unetkit.device import EagerFallback, Execution, autocast, maybe_compile, memory_format
from unetkit.device.precision import has_bf16_instructions
from unetkit.inference.networks import TorchNetwork
from unetkit.model.unet import UNet
from unetkit.training.speed import step_execution
from unetkit.training.step import build_optimizer

UNETKIT = "unetkit"
UNETKIT_COMPILED = "unetkit+compile"


@dataclass
class Contender:
    """One model with the execution settings it is measured under; inference may run a copy in
    other ones (unetkit chooses them apart)."""

    name: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    dtype: torch.dtype | None  # autocast dtype; None = float32
    layout: torch.memory_format
    cudnn_benchmark: bool
    runner: EagerFallback | None = None  # how steps run the model: compiled (falling back) or eager
    infer_model: nn.Module | None = None  # default: the trained model, in its dtype and layout
    infer_dtype: torch.dtype | None = None
    infer_layout: torch.memory_format | None = None
    reference_setting: str = ""  # a reference's name and dtype setting: its rows differ only in layout
    train_seconds: list[float] = field(default_factory=list)
    infer_seconds: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.runner = self.runner or EagerFallback(self.model, None)
        if self.infer_model is None:
            self.infer_model, self.infer_dtype, self.infer_layout = self.model, self.dtype, self.layout
        self.infer_runner = self.runner if self.infer_model is self.model else EagerFallback(self.infer_model, None)

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.dtype or torch.float32

    @property
    def infer_compute_dtype(self) -> torch.dtype:
        return self.infer_dtype or torch.float32


@dataclass(frozen=True)
class UnetkitExecutions:
    """What unetkit's CLI runs here: for its training step and for its inference forward pass."""

    train: Execution
    infer: Execution


def benchmark_config(args: argparse.Namespace, precision: str = "auto") -> Config:
    config = Config(model=UNetConfig(in_channels=3, classes=1, base_width=args.base_width))
    config.data.patch_size, config.train.batch_size, config.train.precision = args.size, args.batch, precision
    return config


def unetkit_executions(args: argparse.Namespace, device: torch.device, precision: str = "auto") -> UnetkitExecutions:
    """The layout and ``precision`` (resolved) unetkit's train and predict would run in here, each
    resolved by the function they call (measured, cached as they cache it)."""
    config = benchmark_config(args, precision)
    network = TorchNetwork(UNet(config.model), device, precision, config.predict.memory_layout,
                           (args.batch, 3, args.size, args.size), config.model.classes)  # fmt: skip
    return UnetkitExecutions(step_execution(config, device), network.execution)


def unetkit_contender(args: argparse.Namespace, device: torch.device, name: str, precision: str,
                      compiled: bool = False) -> Contender:  # fmt: skip
    """unetkit under ``precision``, in the layouts and dtypes its CLI would choose for it here."""
    config = benchmark_config(args, precision)
    chosen = unetkit_executions(args, device, precision)
    layout = memory_format(chosen.train.layout.channels_last)
    model = UNet(config.model).to(device, memory_format=layout)
    runner = maybe_compile(model, compiled)  # as the trainer runs `--compile`
    infer_layout = memory_format(chosen.infer.layout.channels_last)
    infer_model = model if infer_layout == layout else copy.deepcopy(model).to(memory_format=infer_layout)
    return Contender(name, model, build_optimizer(model, config), chosen.train.precision.dtype, layout, True, runner,
                     infer_model, chosen.infer.precision.dtype, infer_layout)  # fmt: skip


def build_contenders(args: argparse.Namespace, device: torch.device, auto: UnetkitExecutions) -> list[Contender]:
    """unetkit in its three precisions (and compiled, if asked), then each reference in both
    layouts as shipped and, where they differ, at unetkit's ``auto`` dtypes."""
    contenders = [unetkit_contender(args, device, UNETKIT, "auto"), unetkit_contender(args, device, f"{UNETKIT} float32", "32")]
    if has_bf16_instructions():  # else emulated (auto does not time it): minutes per step at these sizes
        contenders.append(unetkit_contender(args, device, f"{UNETKIT} bfloat16", "bf16"))
    if args.compile:
        contenders.append(unetkit_contender(args, device, UNETKIT_COMPILED, "auto", compiled=True))
    dtypes = {"": (None, None), ", unetkit's dtype": (auto.train.precision.dtype, auto.infer.precision.dtype)}
    if dtypes[", unetkit's dtype"] == (None, None):
        del dtypes[", unetkit's dtype"]  # float32: the same as shipped
    layouts = {"": torch.contiguous_format, ", channels-last": torch.channels_last}
    for reference in REFERENCES:
        for dtype_name, (train_dtype, infer_dtype) in dtypes.items():
            for layout_name, layout in layouts.items():
                model = reference.build(3, 1, args.base_width)
                if model is not None:
                    model = model.to(device, memory_format=layout)
                    contenders.append(Contender(
                        reference.name + dtype_name + layout_name, model, reference.optimizer(model), train_dtype,
                        layout, False, None, model, infer_dtype, layout, reference.name + dtype_name,
                    ))
    return contenders


def train_step(contender: Contender, images: torch.Tensor, masks: torch.Tensor, loss_fn: nn.Module) -> None:
    torch.backends.cudnn.benchmark = contender.cudnn_benchmark
    contender.model.train()

    def forward_backward(model: nn.Module) -> None:
        with autocast(images.device, contender.dtype):
            logits = model(images.contiguous(memory_format=contender.layout))
        loss = loss_fn(logits.float(), masks, None)
        contender.optimizer.zero_grad(set_to_none=True)
        loss.backward()

    contender.runner.run(forward_backward)
    contender.optimizer.step()


def infer_step(contender: Contender, images: torch.Tensor) -> None:
    torch.backends.cudnn.benchmark = contender.cudnn_benchmark
    contender.infer_model.eval()

    def forward(model: nn.Module) -> None:
        with torch.inference_mode(), autocast(images.device, contender.infer_dtype):
            model(images.contiguous(memory_format=contender.infer_layout))

    contender.infer_runner.run(forward)
