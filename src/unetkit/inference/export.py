"""Exports of a trained U-Net: ONNX (dynamic batch and image size), TorchScript, and safetensors
weights that carry their config.

Exports work on a CPU float32 copy of the model in eval mode, so the caller's model is left as it
was. Every file is written atomically.
"""

from __future__ import annotations

import copy
import json
import typing
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from unetkit.atomic import atomic_path, atomic_write_bytes
from unetkit.checkpoint import SAFETENSORS_FORMAT, load_weights
from unetkit.config import Config, ExportFormat
from unetkit.errors import ConfigError, UnetkitError
from unetkit.model.unet import UNet
from unetkit.model.sizes import valid_input_size

PARITY_TOLERANCE = 1e-4  # max abs logit difference accepted between PyTorch and an export
MAX_INPUT_SIDE = 65536  # the largest image side an exported model is declared to accept
MAX_INPUT_BATCH = 1024


def export_onnx(model: UNet, path: str | Path, opset: int | None = None) -> Path:
    """Write ``model`` as ONNX with dynamic batch, height and width (and depth); returns ``path``.

    ``same`` models accept any size; ``valid`` models every valid input size, the smallest plus
    any multiple of 2**depth.
    """
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter needs it; fail with advice, not a trace)
    except ImportError:
        raise ConfigError("ONNX export needs onnx and onnxscript: pip install 'unetkit[onnx]'") from None
    exportable = _cpu_eval_copy(model)
    example = torch.randn(2, model.config.in_channels, *example_sizes(model)[0])  # batch 1 would be fixed
    program = torch.onnx.export(
        exportable,
        (example,),
        dynamo=True,
        dynamic_shapes=(_dynamic_axes(model),),
        input_names=["image"],
        output_names=["logits"],
        opset_version=opset,
        verbose=False,
    )
    atomic_write_bytes(path, program.model_proto.SerializeToString())
    return Path(path)


def export_torchscript(model: UNet, path: str | Path) -> Path:
    """Write ``model`` as TorchScript; returns ``path``.

    Scripting keeps the shape arithmetic (``same`` models pad inside ``forward``); where the model
    cannot be scripted it is traced, and either way the result is checked against the model on a
    second image size, so a trace that baked in one size is refused rather than saved.
    """
    exportable = _cpu_eval_copy(model)
    first, second = (torch.randn(1, model.config.in_channels, *size) for size in example_sizes(model))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, still asked for
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the size check below decides
        try:
            module = torch.jit.script(exportable)
            _check_same_outputs(module, exportable, second)
        except Exception:  # scripting fails in many ways on Python it cannot compile
            module = torch.jit.trace(exportable, first)
            _check_same_outputs(module, exportable, second)
        with atomic_path(path) as tmp:
            torch.jit.save(module, str(tmp))
    return Path(path)


def check_onnx_parity(model: UNet, path: str | Path, sizes: Sequence[tuple[int, ...]] | None = None) -> float:
    """Max abs logit difference between ``model`` and the ONNX file at ``path`` run by onnxruntime,
    on random inputs of each (height, width) (volumes: (depth, height, width)) in ``sizes``
    (default: ``example_sizes``)."""
    import onnxruntime

    reference = _cpu_eval_copy(model)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for size in sizes or example_sizes(model):
        x = torch.randn(2, model.config.in_channels, *size, generator=generator)
        with torch.inference_mode():
            expected = reference(x).numpy()
        (actual,) = session.run(None, {input_name: x.numpy()})
        worst = max(worst, float(np.abs(actual - expected).max()))
    return worst


def export_safetensors(model: nn.Module, config: Config, path: str | Path) -> Path:
    """Write the weights as safetensors with the whole config (JSON) in the metadata; returns ``path``."""
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    metadata = {"format": SAFETENSORS_FORMAT, "config": json.dumps(config.to_dict())}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return Path(path)


def export_checkpoint(checkpoint: str | Path, fmt: ExportFormat, out: str | Path, check: bool = True) -> Path:
    """`unetkit export`: rebuild the model from ``checkpoint`` and write it as ``fmt``
    (one of ``ExportFormat``); an ONNX export is checked against PyTorch with onnxruntime."""
    config, state = load_weights(checkpoint)
    model = UNet(config.model)
    model.load_state_dict(state)
    model.eval()
    if fmt == "onnx":
        with atomic_path(out) as candidate:  # checked before it may replace a good file at ``out``
            export_onnx(model, candidate)
            if check:
                _check_onnx_parity(model, candidate, out)
        return Path(out)
    if fmt == "torchscript":
        return export_torchscript(model, out)
    if fmt == "safetensors":
        return export_safetensors(model, config, out)
    raise ConfigError(f"--format {fmt!r}: choose one of {', '.join(typing.get_args(ExportFormat))}")


def example_sizes(model: UNet) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Two different (height, width) the model accepts (volumes: (depth, height, width)): one
    square (a cube of 2 pooling multiples a side), one not (odd for ``same``).

    For ``valid`` models both are at least two steps above the smallest valid side, so an
    export traced at the first keeps its size dimensions symbolic.
    """
    depth = model.config.depth
    if model.config.padding == "same":
        multiples = model.config.size_multiple
        first = tuple((4 if model.config.dims == 2 else 2) * multiple for multiple in multiples)
        offsets = (multiples[0] + 1, -3, 2)  # a side beyond a multiple, one below, one between
        return first, tuple(side + offset for side, offset in zip(first, offsets))
    step = 2**depth
    side = valid_input_size(1, depth) + 2 * step  # torch.export specialises dimensions of size 0 and 1
    return (side, side), (side + step, side + 2 * step)


def _dynamic_axes(model: UNet) -> dict[int, Any]:
    """torch.export dimensions: any batch; any side (``same``) or the valid sides, which are
    ``smallest + k * 2**depth`` for k >= 0 (``valid``)."""
    from torch.export import Dim

    axes: dict[int, Any] = {0: Dim("batch", min=1, max=MAX_INPUT_BATCH)}
    if model.config.padding == "same":
        names = ("depth", "height", "width")[-model.config.dims :]
        axes.update({axis: Dim(name, min=1, max=MAX_INPUT_SIDE) for axis, name in enumerate(names, start=2)})
        return axes
    depth = model.config.depth
    smallest, step = valid_input_size(1, depth), 2**depth
    for axis, name in ((2, "height"), (3, "width")):
        axes[axis] = step * Dim(f"{name}_steps", min=0, max=MAX_INPUT_SIDE // step) + smallest
    return axes


def _cpu_eval_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).cpu().float().eval()


def _check_onnx_parity(model: UNet, candidate: Path, out: str | Path) -> None:
    difference = check_onnx_parity(model, candidate)
    if difference > PARITY_TOLERANCE:
        raise UnetkitError(
            f"{out}: the ONNX export differs from PyTorch by {difference:.2e} (> {PARITY_TOLERANCE}); "
            "nothing written (an earlier file there is kept)"
        )


def _check_same_outputs(exported: nn.Module, reference: nn.Module, x: torch.Tensor) -> None:
    with torch.inference_mode():
        difference = float((exported(x) - reference(x)).abs().max())
    if difference > PARITY_TOLERANCE:
        raise UnetkitError(
            f"the TorchScript module differs from the model by {difference:.2g} on a {tuple(x.shape[-2:])} "
            "input (tracing fixed one image size); use ONNX export instead"
        )
