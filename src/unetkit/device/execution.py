"""Execution settings shared by the trainer, the predictor and the benchmarks: device, autocast,
memory format, compilation. One place, so the fast path is the default path."""

from __future__ import annotations

import contextlib
import logging
from typing import Callable, ContextManager, Iterator, TypeVar

import torch

from unetkit.errors import ConfigError, UnetkitError

log = logging.getLogger(__name__)
T = TypeVar("T")


def select_device(name: str = "auto") -> torch.device:
    """``auto``: the first CUDA GPU if there is one (the local rank's under torchrun), else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


def autocast(device: torch.device, dtype: torch.dtype | None) -> ContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def cudnn_autotune(device: torch.device) -> Iterator[None]:
    """Let cuDNN time its kernels for the shapes seen (inference tiles have one shape), unless
    deterministic algorithms were asked for; the global flag is put back afterwards."""
    cudnn = torch.backends.cudnn
    saved = cudnn.benchmark
    if device.type == "cuda" and not torch.are_deterministic_algorithms_enabled():
        cudnn.benchmark = True
    try:
        yield
    finally:
        cudnn.benchmark = saved


def memory_format(channels_last: bool, dims: int = 2) -> torch.memory_format:
    """Channels-last (NHWC, or NDHWC for volumes: ``dims`` 3) or contiguous tensors."""
    if not channels_last:
        return torch.contiguous_format
    return torch.channels_last if dims == 2 else torch.channels_last_3d


class EagerFallback:
    """A module to run compiled, with its eager self behind it.

    torch.compile compiles lazily: the forward graph on the first call (and on each new shape), the
    backward graph on the first backward pass, so a missing or broken compiler fails there, not in
    ``torch.compile()``. ``run`` runs a whole step (forward and backward) with the compiled module;
    if that fails it warns once, runs the step again eagerly and stays eager from then on.
    """

    def __init__(self, eager: torch.nn.Module, compiled: torch.nn.Module | None) -> None:
        self.eager = eager
        self.compiled = compiled

    def run(self, step: Callable[[torch.nn.Module], T], undo: Callable[[], None] = lambda: None) -> T:
        """``step(module)``; on a compiler failure, ``undo()`` then ``step(eager module)``."""
        if self.compiled is None:
            return step(self.eager)
        try:
            return step(self.compiled)
        except UnetkitError:
            raise
        except Exception as exc:  # the compiler's failure modes are many and version-specific
            log.warning("--compile: the compiled model failed (%s); running eagerly", _root_cause(exc))
            self.compiled = None
            undo()
            return step(self.eager)


def maybe_compile(model: torch.nn.Module, enabled: bool) -> EagerFallback:
    """``model`` behind torch.compile where asked; a compiler that is missing or fails (now or on
    first use) warns and leaves the eager model."""
    if not enabled:
        return EagerFallback(model, None)
    try:
        return EagerFallback(model, torch.compile(model, dynamic=False))
    except Exception as exc:
        log.warning("--compile: torch.compile is unavailable (%s); running eagerly", _root_cause(exc))
        return EagerFallback(model, None)


def _root_cause(exc: BaseException) -> str:
    """The root cause's type and first line (the compiler's wrappers add pages of context)."""
    while (inner := getattr(exc, "inner_exception", None) or exc.__cause__) is not None:
        exc = inner
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"
