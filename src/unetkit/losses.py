"""Segmentation losses: pixel-wise cross-entropy, soft Dice, their sums, and pixel-weighted variants.

Every loss module has the same call, ``loss(logits, target, weight=None)``:

- ``logits`` (N, K, H, W): K == 1 is a binary model (sigmoid), K >= 2 a softmax model;
- ``target`` (N, H, W) long class ids, ``ignore_index`` where a pixel has no label;
- ``weight`` (N, H, W) float, an optional per-pixel weight (the paper's border weight map);
- models with instance maps (channels after the K class logits) add their targets, ``maps``
  (N, A, H, W) float in 0..1 (``SegmentationLoss``).

Ignored pixels count in no term: their loss, their Dice contributions and their gradient are zero.
The loss is computed in float32 whatever the autocast dtype of the logits, so bf16/fp16 training
cannot overflow or underflow in the log/exp terms.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unetkit.errors import ConfigError

LOSS_NAMES = ("bce", "ce", "dice", "bce+dice", "ce+dice", "weighted-bce", "weighted-ce")
BINARY_MAPS = ("border", "core")  # instance maps that are masks (the others are continuous, e.g. distance)

# Denominators never drop below this, so a batch whose pixels are all ignored gives 0, not NaN.
_EPS = 1e-12


def _pixel_weights(target: Tensor, weight: Tensor | None, ignore_index: int) -> tuple[Tensor, Tensor]:
    """(target with ignored pixels set to class 0, float32 weight that is 0 at ignored pixels)."""
    valid = target != ignore_index
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    weights = valid.float() if weight is None else torch.where(valid, weight.float(), 0.0)
    return safe_target, weights


class CrossEntropy(nn.Module):
    """Pixel-wise cross-entropy: binary (sigmoid) for one logit channel, softmax for K >= 2.

    The per-pixel loss is multiplied by the pixel weight and normalised by the sum of the weights
    of the non-ignored pixels, so a uniform weight map changes nothing.
    """

    def __init__(self, ignore_index: int = 255) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        logits = logits.float()
        target, weights = _pixel_weights(target, weight, self.ignore_index)
        if logits.shape[1] == 1:
            per_pixel = F.binary_cross_entropy_with_logits(logits[:, 0], target.float(), reduction="none")
        else:
            per_pixel = F.cross_entropy(logits, target, reduction="none")
        return (per_pixel * weights).sum() / weights.sum().clamp_min(_EPS)


class SoftDice(nn.Module):
    """1 - mean soft Dice over the foreground classes, each computed over the whole batch.

    Binary (one logit channel): Dice of sigmoid(logits) against ``target == 1``. Softmax models:
    Dice of each class 1..K-1 (background excluded) against its one-hot target, averaged over all
    of them; a class absent from the batch still penalises probability put on it.
    Per class, with pixel weights w (0 at ignored pixels), probabilities p and one-hot truth t:
    ``dice = (2 * sum(w p t) + smooth) / (sum(w p) + sum(w t) + smooth)``. The smooth term keeps
    empty masks defined: an empty prediction on an empty mask has Dice 1, i.e. loss 0.
    """

    def __init__(self, ignore_index: int = 255, smooth: float = 1.0) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.smooth = smooth

    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        logits = logits.float()
        target, weights = _pixel_weights(target, weight, self.ignore_index)
        classes = logits.shape[1]
        if classes == 1:
            probabilities = torch.sigmoid(logits)
            truth = (target == 1).float().unsqueeze(1)
        else:
            probabilities = torch.softmax(logits, dim=1)[:, 1:]
            truth = F.one_hot(target, classes).movedim(-1, 1)[:, 1:].float()
        return 1 - soft_dice(probabilities, truth, weights.unsqueeze(1), self.smooth).mean()


def soft_dice(probabilities: Tensor, truth: Tensor, weights: Tensor, smooth: float = 1.0) -> Tensor:
    """Per channel, the Dice of (N, C, H, W) probabilities (volumes: (N, C, D, H, W)) against truth
    in 0..1 over the batch, each pixel weighted (``weights`` broadcasts over the channels)."""
    sum_dims = (0, *range(2, probabilities.ndim))
    intersection = (probabilities * truth * weights).sum(sum_dims)
    total = (probabilities * weights).sum(sum_dims) + (truth * weights).sum(sum_dims)
    return (2 * intersection + smooth) / (total + smooth)


class InstanceMapLoss(nn.Module):
    """The instance maps' term (``data/instance_maps.py``) over the pixels whose class is not
    ignored: per map, binary cross-entropy against its target in 0..1 (calibrated: its minimum is
    the target itself, so a distance map keeps its peaks), plus soft Dice for the maps that are
    masks (``BINARY_MAPS``: thin borders, which cross-entropy alone lets fade)."""

    def __init__(self, maps: Sequence[str], smooth: float = 1.0) -> None:
        super().__init__()
        self.binary = [index for index, name in enumerate(maps) if name in BINARY_MAPS]
        self.smooth = smooth

    def forward(self, logits: Tensor, maps: Tensor, valid: Tensor) -> Tensor:
        logits, maps = logits.float(), maps.float()
        weights = valid.float().unsqueeze(1)
        per_pixel = F.binary_cross_entropy_with_logits(logits, maps, reduction="none") * weights
        loss = per_pixel.sum() / (weights.sum() * logits.shape[1]).clamp_min(_EPS)
        if self.binary:
            masks = self.binary
            loss = loss + (1 - soft_dice(torch.sigmoid(logits[:, masks]), maps[:, masks], weights, self.smooth)).mean()
        return loss


class SegmentationLoss(nn.Module):
    """The sum of its terms on the class logits, plus the instance maps' term on the channels after
    them where the model has maps (``forward``'s ``maps``: their targets, (N, A, H, W)).
    ``needs_weight_map``: the ``weighted-*`` losses refuse to run without a weight map, so a config
    that forgets ``data.weight_map`` fails loudly instead of silently training unweighted."""

    def __init__(
        self, name: str, terms: list[nn.Module], classes: int, needs_weight_map: bool,
        instance_maps: Sequence[str] = (), ignore_index: int = 255,
    ) -> None:
        super().__init__()
        self.name = name
        self.terms = nn.ModuleList(terms)
        self.classes = classes
        self.needs_weight_map = needs_weight_map
        self.instance_maps = len(instance_maps)
        self.ignore_index = ignore_index
        self.map_term = InstanceMapLoss(instance_maps)

    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None = None, maps: Tensor | None = None) -> Tensor:
        channels = self.classes + self.instance_maps
        if logits.shape[1] != channels:
            raise ValueError(f"loss {self.name!r} expects {channels} logit channel(s), got {logits.shape[1]}")
        if weight is None and self.needs_weight_map:
            raise ConfigError(f"loss {self.name!r} needs per-pixel weight maps; set data.weight_map: true")
        class_logits, map_logits = logits.split([self.classes, self.instance_maps], dim=1)
        loss = sum(term(class_logits, target, weight) for term in self.terms)
        if not self.instance_maps:
            return loss
        if maps is None or maps.shape[1] != self.instance_maps:
            raise ValueError(f"loss {self.name!r} expects targets for {self.instance_maps} instance map(s)")
        return loss + self.map_term(map_logits, maps, target != self.ignore_index)


# Binary loss name -> its softmax twin: one sigmoid logit and two softmax logits are the same model.
_SOFTMAX_TWIN = {"bce": "ce", "bce+dice": "ce+dice", "weighted-bce": "weighted-ce"}
_BINARY_TWIN = {softmax: binary for binary, softmax in _SOFTMAX_TWIN.items()}


def _resolve_name(name: str, classes: int) -> str:
    """The loss name for this class count: the ce and bce names swap where the other one fits."""
    if name not in LOSS_NAMES:
        raise ConfigError(f"train.loss: unknown loss {name!r}; choose one of {list(LOSS_NAMES)}")
    if classes < 1:
        raise ConfigError(f"model.classes must be >= 1, got {classes}")
    if classes == 1:
        return _BINARY_TWIN.get(name, name)
    if name in _SOFTMAX_TWIN and classes > 2:
        raise ConfigError(
            f"train.loss: {name!r} is a binary loss but model.classes is {classes}; use {_SOFTMAX_TWIN[name]!r}"
        )
    return _SOFTMAX_TWIN.get(name, name)


def build_loss(name: str, classes: int, ignore_index: int = 255, instance_maps: Sequence[str] = ()) -> SegmentationLoss:
    """The loss called ``name`` for a model with ``classes`` output classes (1 = binary, sigmoid)
    and the named ``instance_maps`` channels after them (their term is added whatever the name).

    Names: bce, ce, dice, bce+dice, ce+dice, weighted-bce, weighted-ce. For ``classes == 1`` the
    ``ce`` names become their ``bce`` twins and for ``classes == 2`` the ``bce`` names their ``ce``
    twins (one sigmoid logit or two softmax logits); a ``bce`` name with 3+ classes is a ConfigError.
    Every loss uses a weight map when one is passed; ``weighted-*`` require one.
    """
    resolved = _resolve_name(name, classes)
    weighted = resolved.startswith("weighted-")
    parts = resolved.removeprefix("weighted-").split("+")
    terms: list[nn.Module] = []
    if "ce" in parts or "bce" in parts:
        terms.append(CrossEntropy(ignore_index))
    if "dice" in parts:
        terms.append(SoftDice(ignore_index))
    return SegmentationLoss(resolved, terms, classes, weighted, instance_maps, ignore_index)
