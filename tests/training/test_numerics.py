"""Non-finite steps are skipped on the device and change nothing; a streak of them stops training
with a message naming the likely causes; the check costs no host sync per step; --grad-clip clips."""

from __future__ import annotations

import pytest
import torch

from unetkit.cli import main
from unetkit.config import Config, TrainConfig, UNetConfig
from unetkit.errors import TrainingError
from unetkit.device.distributed import DistributedContext
from unetkit.training.step import Components, LossTracker, build_components, check_streak, train_step
from training_helpers import TINY

CONTEXT = DistributedContext()  # one CPU process
Batch = dict[str, torch.Tensor]


def tiny_config(**train) -> Config:
    """Constant learning rate (no schedule), so a skipped step leaves no trace in later ones."""
    model = UNetConfig(in_channels=1, classes=1, depth=2, base_width=4)
    return Config(model=model, train=TrainConfig(**{"precision": "32", "scheduler": "none", "log_every": 1000, **train}))


def batch(seed: int, nan: bool = False) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(2, 1, 16, 16, generator=generator)
    mask = (image[:, 0] > 0.5).long()
    return {"image": torch.full_like(image, float("nan")) if nan else image, "mask": mask}


def train(config: Config, batches: list[Batch]) -> Components:
    """Fresh components (same seed, same initial weights) trained on ``batches``, the losses read as
    the trainer reads them: at logging steps and at the end."""
    torch.manual_seed(0)
    parts = build_components(config, CONTEXT)
    buffers, losses = list(parts.model.buffers()), LossTracker(CONTEXT.device)
    for step, item in enumerate(batches, start=1):
        losses.add(train_step(parts, item, config, CONTEXT.device, buffers))
        if step % config.train.log_every == 0 or step == len(batches):
            check_streak(int(losses.take_worst_streak().item()), config.train.max_bad_steps, parts.dtype)
    return parts


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    """Weights and buffers (batch-norm statistics included) bit for bit."""
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


@pytest.mark.parametrize("grad_clip", [0.0, 1.0])
def test_a_nan_step_is_skipped_and_changes_nothing(grad_clip):
    config = tiny_config(grad_clip=grad_clip)
    with_nan = train(config, [batch(1), batch(0, nan=True), batch(2)])
    without = train(config, [batch(1), batch(2)])
    assert_same_state(with_nan.model, without.model)
    assert with_nan.scaler.get_scale() == 1.0, "a skipped step must not shrink the fp32/bf16 loss scale for good"


def test_nan_batches_leave_the_initial_model_untouched():
    untouched = train(tiny_config(), [])
    assert_same_state(train(tiny_config(max_bad_steps=10), [batch(0, nan=True)] * 3).model, untouched.model)


def test_host_syncs_do_not_grow_with_the_number_of_steps(monkeypatch):
    """The finite check is counted on the device; the host reads it only at logging steps."""
    calls = {"count": 0}

    def counting(name: str):
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, **kwargs):
            calls["count"] += 1
            return original(self, *args, **kwargs)

        return wrapper

    config = tiny_config()

    def syncs(steps: int) -> int:
        calls["count"] = 0
        with monkeypatch.context() as patch:
            for name in ("item", "__bool__", "__float__", "__int__", "tolist"):
                patch.setattr(torch.Tensor, name, counting(name))
            train(config, [batch(seed) for seed in range(steps)])
        return calls["count"]

    assert syncs(6) == syncs(2)


def test_a_streak_between_logging_steps_is_not_missed():
    config = tiny_config(max_bad_steps=3, log_every=4)
    with pytest.raises(TrainingError, match="3 consecutive"):
        train(config, [batch(0, nan=True)] * 3 + [batch(1)])


def test_grad_clip_bounds_the_update():
    """Plain SGD with lr 1: the update is minus the gradient, so its norm is at most --grad-clip."""
    def update_norm(grad_clip: float) -> float:
        config = tiny_config(optimizer="sgd", momentum=0.0, weight_decay=0.0, lr=1.0, grad_clip=grad_clip)
        before = train(config, []).model.state_dict()
        after = train(config, [batch(3)]).model.named_parameters()
        return float(torch.linalg.vector_norm(torch.cat([(p.detach() - before[name]).ravel() for name, p in after])))

    assert update_norm(0.0) > 1e-3
    assert update_norm(1e-3) == pytest.approx(1e-3, rel=1e-3)


def test_diverging_training_stops_with_exit_2_naming_the_causes(tiny_data, tmp_path, capsys):
    # A learning rate of 1e39 overflows the weights to inf after one step: every later loss is NaN.
    argv = ["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--epochs", "1", "--workers", "0",
            "--lr", "1e39", "--max-bad-steps", "2", "--log-every", "1", *TINY]
    assert main(argv) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("unetkit: error: 2 consecutive training steps had a non-finite loss"), message
    for cause in ("learning rate", "--lr", "--grad-clip", "masks"):
        assert cause in message, message


def test_a_compiler_failing_in_the_first_backward_leaves_training_as_if_eager(monkeypatch, caplog):
    from test_device import FAILS_ON_FIRST_BACKWARD, compile_with

    eager = train(tiny_config(), [batch(1), batch(2)])
    compile_with(monkeypatch, FAILS_ON_FIRST_BACKWARD)
    with caplog.at_level("WARNING", logger="unetkit.device"):
        fallen_back = train(tiny_config(compile=True), [batch(1), batch(2)])
    assert "running eagerly" in caplog.text and fallen_back.train_model.compiled is None
    assert_same_state(fallen_back.model, eager.model)  # batch-norm statistics of the failed pass undone
