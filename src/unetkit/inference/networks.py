"""The network call behind a Predictor: a PyTorch model or an exported ONNX file, as one small
callable (``Network``), and test-time augmentation over the 8 symmetries of the square."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

from unetkit.config import UNetConfig
from unetkit.device import (
    Execution, autocast, cudnn_autotune, memory_format, resolve_execution, resolve_layout, resolve_precision,
)
from unetkit.device.timing import calls_per_second
from unetkit.errors import ConfigError
from unetkit.model.unet import to_probabilities

Network = Callable[[torch.Tensor], torch.Tensor]
"""A batch of normalised tiles (N, C, h, w) float32 on the CPU -> probabilities (N, K + maps, h', w')."""


# The 8 symmetries of the square (4 rotations, each with and without a mirror) used by TTA.
DIHEDRAL = tuple(itertools.product(range(4), (False, True)))


class TorchNetwork:
    """Runs a PyTorch model in eval mode under the chosen precision and memory layout. ``auto``
    (either) on a CPU times the model's forward pass on a batch of ``input_shape`` (N, C, h, w),
    the tiles it will see (cached per machine, apart from training)."""

    def __init__(
        self, model: nn.Module, device: torch.device, precision: str, layout: str,
        input_shape: tuple[int, ...] | None = None, classes: int | None = None,
    ) -> None:
        self.device = device
        self.classes = classes  # class channels; those after them are instance maps
        self.model = model.to(device=device)
        self.dims = getattr(getattr(model, "config", None), "dims", 2)
        self.execution = self._execution(precision, layout, input_shape)  # what it runs in, and why
        self.format = memory_format(self.execution.layout.channels_last, self.dims)
        self.model.to(memory_format=self.format)
        self.dtype = self.execution.precision.dtype

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        inputs = batch.to(self.device, non_blocking=True).contiguous(memory_format=self.format)
        with _eval_mode(self.model), torch.inference_mode(), cudnn_autotune(self.device):
            with autocast(self.device, self.dtype):
                logits = self.model(inputs)
        return to_probabilities(logits.float(), self.classes, spatial_dims=logits.ndim - 2)

    def _execution(self, precision: str, layout: str, input_shape: tuple[int, ...] | None) -> Execution:
        """Layout and precision as asked; ``auto`` times forward passes on ``input_shape`` tiles
        (without one, nothing is timed)."""
        if input_shape is None:
            return Execution(resolve_layout(self.device, layout, None, self.dims), resolve_precision(self.device, precision))
        config = getattr(self.model, "config", None)  # a UNet's; other modules are told apart by their layers
        network = dataclasses.asdict(config) if isinstance(config, UNetConfig) else repr(self.model)
        subject = lambda channels_last: {"kind": "inference forward pass", "model": network,  # noqa: E731
                                         "input": list(input_shape), "channels_last": channels_last}  # fmt: skip
        rate = functools.partial(self._forward_rate, input_shape)
        return resolve_execution(self.device, precision, layout, rate, subject, self.dims)

    def _forward_rate(self, input_shape: tuple[int, ...], dtype: torch.dtype | None, channels_last: bool) -> float:
        """Forward passes per second on random tiles (``device.timing``) in ``dtype`` and the
        layout; the caller's random stream is left as it was."""
        layout = memory_format(channels_last, self.dims)
        self.model.to(memory_format=layout)
        with torch.random.fork_rng(devices=[]):
            inputs = torch.randn(input_shape, device=self.device).contiguous(memory_format=layout)
        with _eval_mode(self.model), torch.inference_mode(), autocast(self.device, dtype):
            return calls_per_second(lambda: self.model(inputs), self.device)


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the call only: the trainer validates with the model it is training."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class OnnxRuntimeNetwork:
    """Runs an exported ONNX file with onnxruntime (CUDA when asked for and available)."""

    def __init__(self, path: str | Path, device: torch.device, classes: int | None = None) -> None:
        path = Path(path)
        self.classes = classes  # class channels; those after them are instance maps
        if not path.is_file():
            raise ConfigError(f"{path}: no ONNX file; create it with `unetkit export` or pass its path with --onnx")
        try:
            import onnxruntime
        except ImportError:
            raise ConfigError("--engine onnxruntime needs onnxruntime: pip install 'unetkit[onnx]'") from None
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors for foreign files
            raise ConfigError(f"{path}: onnxruntime cannot load it ({type(exc).__name__}); re-export the model") from None
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        inputs = batch.float().contiguous().numpy()
        (logits,) = self.session.run(None, {self.input_name: inputs})
        return to_probabilities(torch.from_numpy(logits), self.classes, spatial_dims=logits.ndim - 2)


def dihedral_transform(x: torch.Tensor, rotations: int, mirror: bool) -> torch.Tensor:
    """Mirror the last axis (if ``mirror``), then rotate by ``rotations`` quarter turns."""
    x = x.flip(-1) if mirror else x
    return torch.rot90(x, rotations, dims=(-2, -1))


def undo_dihedral_transform(x: torch.Tensor, rotations: int, mirror: bool) -> torch.Tensor:
    x = torch.rot90(x, -rotations, dims=(-2, -1))
    return x.flip(-1) if mirror else x


def dihedral_average(network: Network, batch: torch.Tensor) -> torch.Tensor:
    """Test-time augmentation: the network's probabilities averaged over the 8 dihedral transforms."""
    total = sum(
        undo_dihedral_transform(network(dihedral_transform(batch, rotations, mirror)), rotations, mirror)
        for rotations, mirror in DIHEDRAL
    )
    return total / len(DIHEDRAL)


def mirror_average(network: Network, batch: torch.Tensor) -> torch.Tensor:
    """Test-time augmentation for volumes (nnU-Net's): the network's probabilities averaged over
    the mirrorings along every subset of the spatial axes (8 for a volume)."""
    spatial = range(2, batch.ndim)
    flips = [axes for count in range(len(spatial) + 1) for axes in itertools.combinations(spatial, count)]
    total = sum(network(batch.flip(axes)).flip(axes) if axes else network(batch) for axes in flips)
    return total / len(flips)
