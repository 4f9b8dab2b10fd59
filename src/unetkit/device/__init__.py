"""Where and how the model runs: device, precision (measured on this machine), memory format,
compilation, and the process group of a run over several processes (``distributed``). Shared by
the trainer, the predictor and the benchmarks."""

from unetkit.device.execution import EagerFallback, autocast, cudnn_autotune, maybe_compile, memory_format, select_device
from unetkit.device.precision import PrecisionChoice, Timing, autocast_dtype, resolve_precision

__all__ = [
    "EagerFallback", "autocast", "cudnn_autotune", "maybe_compile", "memory_format", "select_device",
    "PrecisionChoice", "Timing", "autocast_dtype", "resolve_precision",
]
