"""The U-Net: shapes in both paddings, the paper's configuration, the valid-size arithmetic,
initialisation, dropout, activation checkpointing, output helpers and execution settings."""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings

import pytest
import torch
from torch import nn

from unetkit.config import UNetConfig
from unetkit.errors import ConfigError
from unetkit.model import (
    UNet,
    center_crop,
    count_parameters,
    fold_batch_norms,
    mirror_resize,
    nearest_valid_input_sizes,
    start_sigmoids_at_,
    to_labels,
    to_probabilities,
    valid_input_size,
    valid_output_size,
)


def tiny_config(**overrides: object) -> UNetConfig:
    """A network small enough for many tests on two CPU cores."""
    settings: dict[str, object] = {"base_width": 4, "depth": 3, "in_channels": 3, "classes": 1}
    settings.update(overrides)
    return UNetConfig(**settings)


def run(config: UNetConfig, height: int, width: int, batch: int = 2) -> torch.Tensor:
    torch.manual_seed(0)
    model = UNet(config).eval()
    with torch.no_grad():
        return model(torch.randn(batch, config.in_channels, height, width))


def simulated_valid_output(size: int, depth: int) -> int | None:
    """The paper's size bookkeeping, layer by layer: None where some layer cannot be built."""
    for _ in range(depth):
        size -= 4  # two unpadded 3x3 convolutions
        if size <= 0 or size % 2:
            return None  # 2x2 pooling needs an even size
        size //= 2
    size -= 4  # bottleneck
    if size <= 0:
        return None
    for _ in range(depth):
        size = 2 * size - 4  # up-convolution, then two unpadded convolutions
        if size <= 0:
            return None
    return size


# --- the paper's network ---------------------------------------------------------------------

PAPER = UNetConfig(in_channels=1, classes=2, depth=4, base_width=64, norm="none", padding="valid", upsample="transpose")


def test_paper_configuration_has_the_published_parameter_count() -> None:
    with torch.device("meta"):
        model = UNet(PAPER)
    assert count_parameters(model) == 31_030_658


def test_paper_configuration_maps_572_to_388() -> None:
    model = UNet(PAPER).eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 1, 572, 572))
    assert logits.shape == (1, 2, 388, 388)
    assert model.output_size(572) == 388 and model.input_size_for(388) == 572


# --- shapes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("height, width", [(97, 131), (64, 64), (1, 1), (1, 37), (15, 3), (33, 8)])
def test_same_padding_keeps_any_size(height: int, width: int) -> None:
    assert run(tiny_config(), height, width).shape == (2, 1, height, width)


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("classes", [1, 4])
def test_channels_in_and_classes_out(in_channels: int, classes: int) -> None:
    config = tiny_config(in_channels=in_channels, classes=classes)
    assert run(config, 20, 28).shape == (2, classes, 20, 28)


@pytest.mark.parametrize("target, maps", [("border", 1), ("distance", 1), ("border+distance", 2)])
@pytest.mark.parametrize("classes", [1, 3])
def test_instance_maps_add_output_channels_after_the_classes(target: str, maps: int, classes: int) -> None:
    config = tiny_config(classes=classes, instance_target=target)
    assert config.instance_maps[-1] in target and config.out_channels == classes + maps
    logits = run(config, 20, 28)
    assert logits.shape == (2, classes + maps, 20, 28)
    probabilities = to_probabilities(logits, classes)
    torch.testing.assert_close(probabilities[:, classes:], torch.sigmoid(logits[:, classes:]))  # each map its own sigmoid
    class_part = torch.sigmoid(logits[:, :1]) if classes == 1 else torch.softmax(logits[:, :classes], dim=1)
    torch.testing.assert_close(probabilities[:, :classes], class_part)


@pytest.mark.parametrize("depth", [3, 4, 5])
def test_depths(depth: int) -> None:
    config = tiny_config(depth=depth, base_width=2)
    model = UNet(config)
    assert len(model.encoder) == len(model.decoder) == depth
    assert model.encoder[-1][1][0].out_channels == 2 * 2**depth  # bottleneck width
    assert run(config, 45, 50, batch=1).shape == (1, 1, 45, 50)


@pytest.mark.parametrize(
    "norm, norm_type", [("batch", nn.BatchNorm2d), ("instance", nn.GroupNorm), ("group", nn.GroupNorm), ("none", None)]
)
def test_norms(norm: str, norm_type: type[nn.Module] | None) -> None:
    model = UNet(tiny_config(norm=norm, groups=4, base_width=6))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    norms = [m for m in model.modules() if norm_type is not None and isinstance(m, norm_type)]
    assert len(norms) == (len(convs) if norm_type else 0)
    assert all((conv.bias is not None) == (norm == "none") for conv in convs)  # no bias before a norm
    if norm == "group":  # 4 groups where they divide the channels, 3 for the 6-channel stage
        assert {layer.num_groups for layer in norms} == {3, 4}
    if norm == "instance":  # one group per channel: instance norm
        assert all(layer.num_groups == layer.num_channels and layer.affine for layer in norms)
    assert run(tiny_config(norm=norm), 24, 24).shape == (2, 1, 24, 24)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_instance_norm_is_instance_norm_and_loads_weights_saved_from_instancenorm2d(layout: torch.memory_format) -> None:
    torch.manual_seed(0)
    norm = UNet(tiny_config(norm="instance")).encoder[0][1][1]
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    earlier = nn.InstanceNorm2d(norm.num_channels, affine=True)  # the module checkpoints once held
    earlier.load_state_dict(norm.state_dict())
    x = (3 * torch.randn(2, norm.num_channels, 9, 11) + 1).contiguous(memory_format=layout)
    torch.testing.assert_close(norm(x), earlier(x), rtol=1e-5, atol=1e-5)
    assert norm(x)[0, 0].mean().abs() < norm.bias[0].abs() + 1e-4  # normalised per sample and channel


@pytest.mark.parametrize("upsample", ["transpose", "bilinear"])
@pytest.mark.parametrize("padding, size, expected", [("same", 30, 30), ("valid", 124, 36)])
def test_upsample_modes_in_both_paddings(upsample: str, padding: str, size: int, expected: int) -> None:
    config = tiny_config(upsample=upsample, padding=padding)
    assert run(config, size, size, batch=1).shape == (1, 1, expected, expected)


def test_valid_padding_output_matches_the_size_helpers() -> None:
    config = tiny_config(padding="valid", depth=2)
    model = UNet(config)
    for size in (44, 60, 76):
        assert run(config, size, size + 16, batch=1).shape[-2:] == (model.output_size(size), model.output_size(size + 16))


# --- valid-padding sizes -----------------------------------------------------------------------


def test_valid_sizes_of_the_paper() -> None:
    assert valid_output_size(572, 4) == 388
    assert valid_input_size(388, 4) == 572
    assert nearest_valid_input_sizes(572, 4) == (572, 572)
    assert nearest_valid_input_sizes(580, 4) == (572, 588)


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_valid_size_helpers_agree_with_layer_by_layer_bookkeeping(depth: int) -> None:
    sizes = range(1, 700)
    valid = [size for size in range(1, 2000) if simulated_valid_output(size, depth) is not None]
    for size in sizes:
        expected = simulated_valid_output(size, depth)
        if expected is None:
            with pytest.raises(ConfigError):
                valid_output_size(size, depth)
        else:
            assert valid_output_size(size, depth) == expected
        below = [v for v in valid if v <= size] or valid[:1]
        above = [v for v in valid if v >= size]
        assert nearest_valid_input_sizes(size, depth) == (below[-1], above[0])
    for output in range(1, 300):
        smallest = min(size for size in valid if simulated_valid_output(size, depth) >= output)
        assert valid_input_size(output, depth) == smallest


def test_invalid_valid_input_names_the_nearest_sizes() -> None:
    model = UNet(tiny_config(padding="valid"))
    with pytest.raises(ConfigError, match=r"use 124 or 132"):
        model(torch.randn(1, 3, 124, 128))
    with pytest.raises(ConfigError, match=r"use 108 or 116"):
        model.output_size(110)


def test_same_padding_size_helpers_are_identities() -> None:
    model = UNet(tiny_config())
    assert model.output_size(101) == 101 and model.input_size_for(77) == 77


# --- configuration errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [("depth", 0), ("depth", 8), ("base_width", 0), ("classes", 0), ("in_channels", 0), ("dropout", 1.0), ("dropout", -0.1)],
)
def test_unbuildable_configs_are_config_errors(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"model.{field}"):
        UNet(tiny_config(**{field: value}))


# --- initialisation and dropout ----------------------------------------------------------------


def test_he_init_matches_the_paper() -> None:
    torch.manual_seed(0)
    model = UNet(tiny_config(init="he", base_width=16, norm="none"))
    for module in model.modules():
        if isinstance(module, nn.ConvTranspose2d):
            fan_in = module.in_channels  # each output pixel sees one tap per input channel
        elif isinstance(module, nn.Conv2d):
            fan_in = module.in_channels * math.prod(module.kernel_size)
        else:
            continue
        expected = math.sqrt(2.0 / fan_in)
        # A sample std of n weights is off by about 1 / sqrt(2n) of itself; allow four times that.
        tolerance = 3 / math.sqrt(module.weight.numel())
        assert module.weight.std().item() == pytest.approx(expected, rel=tolerance)
        if module is not model.head:
            assert torch.count_nonzero(module.bias) == 0


@pytest.mark.parametrize("classes, target, shares", [(1, "none", [0.3]), (1, "core+border", [0.3, 0.05, 0.002]),
                                                    (3, "core", [0.1])])  # fmt: skip
def test_sigmoid_outputs_start_at_their_targets_shares(classes: int, target: str, shares: list[float]) -> None:
    model = UNet(tiny_config(classes=classes, instance_target=target))
    softmax_biases = model.head.bias[: classes if classes > 1 else 0].clone()
    start_sigmoids_at_(model, shares)
    started = torch.sigmoid(model.head.bias[classes if classes > 1 else 0 :])
    assert started.tolist() == pytest.approx([max(share, 0.01) for share in shares], rel=1e-5)  # clipped at 1 %
    assert torch.equal(model.head.bias[: len(softmax_biases)], softmax_biases)  # softmax classes untouched
    with pytest.raises(ValueError, match="shares for"):
        start_sigmoids_at_(model, shares + [0.5])


def test_dropout_acts_in_training_only() -> None:
    model = UNet(tiny_config(dropout=0.5))
    x = torch.randn(1, 3, 16, 16)
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))
    assert isinstance(UNet(tiny_config()).dropout, nn.Identity)


def test_activation_checkpointing_changes_nothing_but_memory() -> None:
    torch.manual_seed(0)
    plain = UNet(tiny_config(dropout=0.3))
    recomputed = copy.deepcopy(plain)
    recomputed.checkpoint_activations = True
    x = torch.randn(2, 3, 24, 24)
    outputs = []
    for model in (plain, recomputed):
        torch.manual_seed(1)  # the same dropout mask
        logits = model(x)
        logits.square().mean().backward()
        outputs.append(logits)
    torch.testing.assert_close(outputs[0], outputs[1])
    for a, b in zip(plain.parameters(), recomputed.parameters()):
        torch.testing.assert_close(a.grad, b.grad)
    for a, b in zip(plain.buffers(), recomputed.buffers()):  # BatchNorm counts each batch once
        torch.testing.assert_close(a, b)


def test_checkpoint_activations_config_reaches_the_model() -> None:
    assert UNet(tiny_config(checkpoint_activations=True)).checkpoint_activations


# --- output helpers ----------------------------------------------------------------------------


def test_probabilities_and_labels_for_one_channel() -> None:
    logits = torch.tensor([[[[0.0, 2.0], [-3.0, 0.5]]]])
    probabilities = to_probabilities(logits)
    torch.testing.assert_close(probabilities, torch.sigmoid(logits))
    assert to_labels(probabilities).tolist() == [[[1, 1], [0, 1]]]  # 0.5 counts as foreground
    assert to_labels(probabilities, threshold=0.7).tolist() == [[[0, 1], [0, 0]]]
    assert to_labels(probabilities).dtype == torch.long


def test_probabilities_and_labels_for_several_classes() -> None:
    logits = torch.tensor([[[[1.0, 0.0]], [[3.0, 0.0]], [[2.0, 5.0]]]])  # (1, 3, 1, 2)
    probabilities = to_probabilities(logits)
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(1, 1, 2))
    assert to_labels(probabilities).tolist() == [[[1, 2]]]
    assert to_labels(probabilities[0]).tolist() == [[1, 2]]  # an unbatched (K, H, W) map too


def test_center_crop_and_mirror_resize() -> None:
    x = torch.arange(5.0).view(1, 1, 1, 5)
    assert center_crop(x, 1, 3).flatten().tolist() == [1.0, 2.0, 3.0]
    assert mirror_resize(x, -1, 8).flatten().tolist() == [0, 1, 2, 3, 4, 3, 2, 1]
    assert mirror_resize(x, -1, 2).flatten().tolist() == [0, 1]
    assert mirror_resize(x[..., :2], -1, 5).flatten().tolist() == [0, 1, 0, 0, 0]  # edge beyond the mirror


# --- execution settings ------------------------------------------------------------------------


def test_channels_last_stays_channels_last_and_matches() -> None:
    torch.manual_seed(0)
    model = UNet(tiny_config(base_width=8)).eval()
    x = torch.randn(2, 3, 40, 40)
    expected = model(x)
    model = model.to(memory_format=torch.channels_last)
    conv_inputs: list[torch.Tensor] = []
    hooks = [
        m.register_forward_hook(lambda module, inputs, output: conv_inputs.append(inputs[0]))
        for m in model.modules()
        if isinstance(m, nn.Conv2d) and m.in_channels > 3
    ]
    logits = model(x.contiguous(memory_format=torch.channels_last))
    for hook in hooks:
        hook.remove()
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)
    assert all(t.is_contiguous(memory_format=torch.channels_last) for t in conv_inputs)  # no layout flips


def test_bf16_autocast_on_cpu_trains() -> None:
    torch.manual_seed(0)
    model = UNet(tiny_config(base_width=8)).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
    assert logits.dtype == torch.bfloat16 and logits.shape == (2, 1, 32, 32)
    logits.float().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    with torch.no_grad():
        torch.testing.assert_close(logits.float(), model(x), rtol=0.1, atol=0.1)


# --- export-friendliness (the inference owner tests the files themselves) ------------------------


@pytest.mark.export
def test_same_model_exports_with_dynamic_height_and_width() -> None:
    from torch.export import Dim, export

    config = tiny_config()
    model = UNet(config).eval()
    smallest = 2**config.depth + 1  # sides of 2**depth or less give 1-pixel maps torch.export specialises
    dims = {2: Dim("height", min=smallest, max=4096), 3: Dim("width", min=smallest, max=4096)}
    program = export(model, (torch.randn(1, 3, 37, 45),), dynamic_shapes={"x": dims})
    for height, width in [(64, 64), (50, 71), (smallest, 100)]:
        x = torch.randn(1, 3, height, width)
        torch.testing.assert_close(program.module()(x), model(x))


@pytest.mark.export
@pytest.mark.parametrize("padding, size", [("same", 29), ("valid", 124)])
def test_model_scripts_with_torchscript(padding: str, size: int) -> None:
    model = UNet(tiny_config(padding=padding)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(model)
    x = torch.randn(1, 3, size, size + 2**3)
    torch.testing.assert_close(scripted(x), model(x))


def test_config_is_kept_on_the_model() -> None:
    config = tiny_config(classes=3)
    assert dataclasses.asdict(UNet(config).config) == dataclasses.asdict(config)


@pytest.mark.parametrize(("norm", "folded"), [("batch", True), ("instance", False), ("none", False)])
def test_folding_batch_norms_keeps_the_outputs_and_leaves_other_norms(norm: str, folded: bool) -> None:
    torch.manual_seed(0)
    model = UNet(UNetConfig(in_channels=2, classes=3, depth=2, base_width=4, norm=norm)).eval()
    with torch.no_grad():  # statistics a trained network would have, not the identity of a fresh one
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    x = torch.randn(2, 2, 20, 28)
    with torch.no_grad():
        expected = model(x)
        fold_batch_norms(model)
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    norms = sum(isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) for m in model.modules())
    assert (norms == 0) == (folded or norm == "none")
    assert not model.training
