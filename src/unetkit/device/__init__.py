"""Where and how the model runs: device, precision and memory layout (measured on this machine),
compilation, and the process group of a run over several processes (``distributed``). Shared by
the trainer, the predictor and the benchmarks."""

from unetkit.device.execution import EagerFallback, autocast, cudnn_autotune, maybe_compile, memory_format, select_device
from unetkit.device.layout import Execution, LayoutChoice, resolve_execution, resolve_layout
from unetkit.device.precision import PrecisionChoice, Timing, autocast_dtype, resolve_precision

__all__ = [
    "EagerFallback", "autocast", "cudnn_autotune", "maybe_compile", "memory_format", "select_device",
    "PrecisionChoice", "Timing", "autocast_dtype", "resolve_precision",
    "Execution", "LayoutChoice", "resolve_execution", "resolve_layout",
]
