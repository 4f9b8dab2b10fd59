"""U-Net (Ronneberger, Fischer & Brox, 2015), built stage by stage from a ``UNetConfig``.

Stage ``i`` of the contracting path has ``base_width * 2**i`` channels, for ``i = 0 .. depth``;
stage ``depth`` is the bottleneck. The expansive path mirrors it, joining each encoder stage's
output (the skip connection) after every up-sampling, and a 1x1 convolution maps the last stage
to one logit channel per class, then one channel per instance map (``UNetConfig.instance_maps``:
each object's border and/or its distance to the border, which separate touching objects).

``dims`` 3 builds the same network of 3D layers for volumes (N, C, D, H, W), the 3D U-Net of Çiçek
et al. 2016; ``pool`` and ``kernels`` set each stage's pooling stride and kernel per axis, so volumes
with coarse slices pool in-plane first and convolve in-plane (1x3x3) where z is still coarse (nnU-Net).

``same`` padding keeps every size (the input is mirror-padded per axis to a multiple of the product
of the pooling strides, ``2**depth`` for images, inside ``forward`` and the logits cropped back); ``valid`` padding is the paper's: each conv pair removes
4 px, so the output is smaller than the input (572 -> 388 at depth 4) and only some input sizes
are possible (see ``valid_output_size`` / ``valid_input_size``).
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from unetkit.config import UNetConfig
from unetkit.errors import ConfigError
from unetkit.model.blocks import LAYERS, BlockSettings, DoubleConv, Down, Up, mirror_resize, pad_to_multiple
from unetkit.model.sizes import valid_input_size, valid_output_size

MAX_DEPTH = 7
PRIOR_RANGE = (0.01, 0.99)  # sigmoid outputs start within these probabilities (start_sigmoids_at_)


class UNet(nn.Module):
    """The U-Net: ``forward(x (N, C, H, W)) -> logits (N, classes + instance maps, H', W')``;
    with ``dims`` 3, ``x (N, C, D, H, W) -> logits (N, classes + instance maps, D, H, W)``."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        validate_config(config)
        self.config = config
        layers = LAYERS[config.dims]
        settings = BlockSettings(norm=config.norm, groups=config.groups, padding=config.padding, layers=layers)
        widths = config.widths
        strides, kernels = config.pool_strides, config.kernel_sizes

        self.stem = DoubleConv(config.in_channels, widths[0], settings, kernels[0])
        self.encoder = nn.ModuleList(
            Down(widths[i], widths[i + 1], settings, strides[i], kernels[i + 1]) for i in range(config.depth)
        )
        # nn.Dropout, not Dropout2d: the paper's Caffe layer drops single activations.
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.decoder = nn.ModuleList(
            Up(widths[i + 1], widths[i], settings, config.upsample, strides[i], kernels[i])
            for i in reversed(range(config.depth))
        )
        self.head = layers.conv(widths[0], config.out_channels, kernel_size=1)

        # Plain attributes (not the config dataclass) so forward also compiles under TorchScript.
        self.same_padding = config.padding == "same"
        self.size_multiple = list(config.size_multiple)
        self.checkpoint_activations = config.checkpoint_activations
        if config.init == "he":
            he_init_(self)

    def forward(self, x: Tensor) -> Tensor:
        sizes = x.shape[2:]
        if self.same_padding:
            x = pad_to_multiple(x, self.size_multiple)
        elif not torch.jit.is_scripting():
            self._check_valid_input(x)
        if self.checkpoint_activations and self.training and not torch.jit.is_scripting():
            logits = self._forward_checkpointed(x)
        else:
            logits = self._forward_stages(x)
        if self.same_padding:
            for axis in range(len(self.size_multiple)):  # crop back
                logits = mirror_resize(logits, axis + 2, sizes[axis])
        return logits

    def _forward_stages(self, x: Tensor) -> Tensor:
        skips = [self.stem(x)]
        for down in self.encoder:
            skips.append(down(skips[-1]))
        x = self.dropout(skips.pop())
        for up in self.decoder:
            x = up(x, skips.pop())
        return self.head(x)

    # The @torch.jit.unused methods never run under TorchScript (torch.utils.checkpoint cannot be
    # scripted) and carry no annotations: TorchScript cannot read postponed ones on them.
    @torch.jit.unused
    def _forward_checkpointed(self, x):
        """``_forward_stages`` with each stage's activations recomputed in backward."""
        skips = [_checkpointed(self.stem, x)]
        for down in self.encoder:
            skips.append(_checkpointed(down, skips[-1]))
        x = self.dropout(skips.pop())
        for up in self.decoder:
            x = _checkpointed(up, x, skips.pop())
        return self.head(x)

    @torch.jit.unused
    def _check_valid_input(self, x):
        if torch.compiler.is_compiling():  # shapes are symbolic while exporting; checked eagerly
            return
        for size in x.shape[-2:]:
            valid_output_size(int(size), self.config.depth)

    def output_size(self, input_size: int) -> int:
        """The logits' side for an input side of ``input_size``."""
        return input_size if self.same_padding else valid_output_size(input_size, self.config.depth)

    def input_size_for(self, output_size: int) -> int:
        """The smallest input side whose logits are at least ``output_size`` px."""
        return output_size if self.same_padding else valid_input_size(output_size, self.config.depth)


def _checkpointed(stage: nn.Module, *inputs: Tensor) -> Tensor:
    if torch.compiler.is_compiling():
        # Compiled recomputation replays the traced graph, which does not update buffers again
        # (and dynamo rejects context_fn).
        return checkpoint(stage, *inputs, use_reentrant=False)
    return checkpoint(
        stage,
        *inputs,
        use_reentrant=False,
        context_fn=lambda: (contextlib.nullcontext(), _buffers_restored(stage)),
    )


@contextlib.contextmanager
def _buffers_restored(module: nn.Module) -> Iterator[None]:
    """Undo buffer updates made inside: BatchNorm must not count a recomputation as a second batch."""
    saved = [(buffer, buffer.clone()) for buffer in module.buffers()]
    try:
        yield
    finally:  # recomputation may stop early, by an exception, once it has what backward needs
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


def validate_config(config: UNetConfig) -> None:
    """Raise ConfigError for a model configuration no network can be built from."""
    checks = [
        (1 <= config.depth <= MAX_DEPTH, f"model.depth must be 1..{MAX_DEPTH}, got {config.depth}"),
        (config.base_width >= 1, f"model.base_width must be >= 1, got {config.base_width}"),
        (config.classes >= 1, f"model.classes must be >= 1 (1 = binary with a sigmoid), got {config.classes}"),
        (config.in_channels >= 1, f"model.in_channels must be >= 1, got {config.in_channels}"),
        (config.groups >= 1, f"model.groups must be >= 1, got {config.groups}"),
        (0.0 <= config.dropout < 1.0, f"model.dropout must be in [0, 1), got {config.dropout}"),
        (config.dims in LAYERS, f"model.dims must be 2 (images) or 3 (volumes), got {config.dims}"),
        (config.dims == 2 or config.padding == "same", "model.padding valid is 2D-only; volumes use padding: same"),
        (not config.pool or config.padding == "same", "model.pool needs padding: same (valid padding pools by 2)"),
        (_per_stage(config.pool, config.depth, config.dims, lambda s: s >= 1),
         f"model.pool must list {config.depth} strides (one per down-sampling) of {config.dims} values >= 1, got {config.pool}"),
        (_per_stage(config.kernels, config.depth + 1, config.dims, lambda k: k >= 1 and k % 2 == 1),
         f"model.kernels must list {config.depth + 1} kernels (one per stage) of {config.dims} odd sizes, got {config.kernels}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message + "; fix it in the config file or on the command line")


def _per_stage(values: list[list[int]], stages: int, dims: int, valid: Callable[[int], bool]) -> bool:
    """Empty (the default), or one entry of ``dims`` valid values per stage."""
    if not values:
        return True
    return len(values) == stages and all(len(stage) == dims and all(map(valid, stage)) for stage in values)


# --- initialisation ----------------------------------------------------------------------------


def _fan_in(conv: nn.modules.conv._ConvNd) -> int:
    """Inputs feeding one output unit: the paper's N in std = sqrt(2 / N)."""
    kernel = math.prod(conv.kernel_size)
    if conv.transposed:
        # Each output pixel of a transposed conv sees kernel / stride**2 taps per input channel
        # (one for the 2x2 stride-2 up-convolution); torch's own fan_in counts output channels.
        return conv.in_channels * max(1, kernel // math.prod(conv.stride))
    return conv.in_channels // conv.groups * kernel


@torch.no_grad()
def start_sigmoids_at_(model: UNet, shares: Sequence[float]) -> None:
    """Start the sigmoid outputs (a binary model's one class channel, then every instance map) at
    the ``shares`` of their targets' pixels that are on (RetinaNet's prior initialisation): the
    first steps then need not unlearn 0.5 everywhere; the instance maps, sparse and thin, learned
    their cores and borders apart only with it. Softmax class channels keep their initialisation."""
    first = 0 if model.config.classes == 1 else model.config.classes
    if len(shares) != model.head.out_channels - first:
        raise ValueError(f"{len(shares)} shares for {model.head.out_channels - first} sigmoid output(s)")
    low, high = PRIOR_RANGE
    for channel, share in enumerate(shares, start=first):
        prior = min(max(share, low), high)
        model.head.bias[channel] = math.log(prior / (1 - prior))


@torch.no_grad()
def he_init_(model: nn.Module) -> None:
    """The paper's initialisation: weights ~ N(0, 2 / fan_in) (He et al. 2015), biases zero."""
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            module.weight.normal_(0.0, math.sqrt(2.0 / _fan_in(module)))
            if module.bias is not None:
                module.bias.zero_()


# --- outputs -----------------------------------------------------------------------------------


def to_probabilities(logits: Tensor, classes: int | None = None, spatial_dims: int = 2) -> Tensor:
    """(N,) C, H, W logits ((N,) C, D, H, W with ``spatial_dims`` 3) -> probabilities: over the first
    ``classes`` channels (all when None) a sigmoid for one channel, else a softmax; the channels
    after them (instance maps) a sigmoid each."""
    channel = -1 - spatial_dims
    classes = logits.shape[channel] if classes is None else classes
    class_logits, map_logits = logits.split([classes, logits.shape[channel] - classes], dim=channel)
    class_probabilities = torch.sigmoid(class_logits) if classes == 1 else torch.softmax(class_logits, dim=channel)
    if not map_logits.shape[channel]:
        return class_probabilities
    return torch.cat([class_probabilities, torch.sigmoid(map_logits)], dim=channel)


def to_labels(probabilities: Tensor, threshold: float = 0.5, spatial_dims: int = 2) -> Tensor:
    """Class ids (long, (N,) H, W, or (N,) D, H, W with ``spatial_dims`` 3): ``p >= threshold`` for
    one channel, the argmax otherwise."""
    channel = -1 - spatial_dims
    if probabilities.shape[channel] == 1:
        return (probabilities.squeeze(channel) >= threshold).long()
    return probabilities.argmax(dim=channel)


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())
