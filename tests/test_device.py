"""Execution settings: device choice, cuDNN autotuning and a --compile that never crashes training."""

from __future__ import annotations

import functools
import logging
import types

import pytest
import torch
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd

from unetkit.device import cudnn_autotune, maybe_compile, select_device, timing
from unetkit.errors import ConfigError


# Stays a skip under $UNETKIT_REQUIRE_ALL (required.py): a machine with CUDA cannot give this message.
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_asking_for_a_missing_gpu_is_a_config_error():
    with pytest.raises(ConfigError, match="CUDA is not available"):
        select_device("cuda")


def failing_compiler(graph: torch.fx.GraphModule, example_inputs: list) -> None:
    raise RuntimeError("no working C++ compiler found")


def eager_forward(graph: torch.fx.GraphModule, example_inputs: list):
    return make_boxed_func(graph.forward)


FAILS_ON_FIRST_CALL = failing_compiler
FAILS_ON_FIRST_BACKWARD = aot_autograd(fw_compiler=eager_forward, bw_compiler=failing_compiler)


def compile_with(monkeypatch: pytest.MonkeyPatch, backend) -> None:
    """Make torch.compile use ``backend``: compilers fail lazily, where ``backend`` runs."""
    torch._dynamo.reset()
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=backend))


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(2, 1, 1))


def loss_and_grads(model: torch.nn.Module) -> tuple[torch.Tensor, list[torch.Tensor]]:
    for parameter in model.parameters():
        parameter.grad = None
    loss = model(torch.ones(1, 1, 8, 8)).square().mean()
    loss.backward()
    return loss.detach(), [parameter.grad.clone() for parameter in model.parameters()]


@pytest.mark.parametrize("backend", [FAILS_ON_FIRST_CALL, FAILS_ON_FIRST_BACKWARD], ids=["forward", "backward"])
def test_a_compiler_failing_on_first_use_warns_once_and_reruns_the_step_eagerly(monkeypatch, caplog, backend):
    compile_with(monkeypatch, backend)
    model = tiny_model()
    expected = loss_and_grads(tiny_model())
    undone = []
    runner = maybe_compile(model, enabled=True)
    with caplog.at_level(logging.WARNING, logger="unetkit.device"):
        first = runner.run(loss_and_grads, undo=lambda: undone.append(True))
        second = runner.run(loss_and_grads)
    assert caplog.text.count("running eagerly") == 1
    assert "no working C++ compiler found" in caplog.text
    assert undone == [True] and runner.compiled is None
    for loss, grads in (first, second):
        assert torch.equal(loss, expected[0])
        assert all(torch.equal(g, e) for g, e in zip(grads, expected[1]))


def test_torch_compile_itself_failing_keeps_the_eager_model(monkeypatch, caplog):
    def unavailable(*args, **kwargs):
        raise RuntimeError("Dynamo is not supported on this Python")

    monkeypatch.setattr(torch, "compile", unavailable)
    model = tiny_model()
    with caplog.at_level(logging.WARNING, logger="unetkit.device"):
        runner = maybe_compile(model, enabled=True)
    assert runner.compiled is None and runner.run(lambda module: module) is model
    assert "Dynamo is not supported" in caplog.text


def test_a_working_compiler_is_used(monkeypatch):
    calls = []

    def counting_backend(graph: torch.fx.GraphModule, example_inputs: list):
        calls.append(graph)
        return graph.forward

    compile_with(monkeypatch, counting_backend)
    runner = maybe_compile(tiny_model(), enabled=True)
    with torch.no_grad():
        runner.run(lambda module: module(torch.ones(1, 1, 8, 8)))
    assert calls and runner.compiled is not None


def test_without_compile_the_model_runs_as_is():
    model = tiny_model()
    assert maybe_compile(model, enabled=False).run(lambda module: module) is model


@pytest.mark.parametrize(("device", "deterministic", "inside"), [("cuda", False, True), ("cuda", True, False), ("cpu", False, False)])
def test_cudnn_autotunes_inference_unless_determinism_is_asked(device, deterministic, inside):
    before = torch.backends.cudnn.benchmark
    saved = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = False  # from True, turning it on could not be seen
    try:
        with cudnn_autotune(torch.device(device)):
            assert torch.backends.cudnn.benchmark is inside
        assert torch.backends.cudnn.benchmark is False
    finally:
        torch.use_deterministic_algorithms(saved)
        torch.backends.cudnn.benchmark = before


@pytest.mark.parametrize(("seconds_per_call", "calls", "rate"), [(0.1, 1 + 6, 10.0), (2.0, 2, 0.5)])
def test_a_timing_takes_the_calls_that_fit_a_second_after_a_warm_up_and_at_least_one(
    monkeypatch, seconds_per_call: float, calls: int, rate: float
):
    monkeypatch.setattr(timing, "MEASURE_SECONDS", 1.0)  # the product's window (the suite shortens it)
    monkeypatch.setattr(timing, "MAX_CALLS", 6)
    clock = [0.0]
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))

    def call() -> None:  # a call that takes seconds_per_call on the fake clock
        clock[0] += seconds_per_call

    made = []
    assert timing.calls_per_second(lambda: made.append(call()), torch.device("cpu")) == pytest.approx(rate)
    assert len(made) == calls
