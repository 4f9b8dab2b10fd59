"""The plan for volumes: 3D or 2D slices from the fingerprint, the budget and the measured speed;
for 3D the patch, pooling per axis, kernels, width, batch, steps and normalisation, each with its
reason. A 2D choice hands the slices to the image plan (``plan.make_plan``)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable

import torch

from unetkit.config import dice_loss_for
from unetkit.planning import budget, rules, volume_rules
from unetkit.planning.probe import available_memory, widened
from unetkit.planning.rules import Choice
from unetkit.planning.volume_rules import VolumeFingerprint
from unetkit.tables import format_table
from unetkit.data.prepare import PreparedData

if TYPE_CHECKING:
    from unetkit.planning.plan import Decisions

NO_BUDGET_STEPS = 2000


def plan_volumes(
    plan: Decisions, prepared: PreparedData, budget_seconds: float, device: torch.device, speed: Callable[..., float],
) -> tuple[VolumeFingerprint, dict[int, float]]:
    """Take the decisions for a volume dataset into ``plan``; its ``model.dims`` then says whether
    they are a 3D plan (2: the caller plans the slices as images). Returns the fingerprint and the
    measured 3D speeds (base width -> steps/s)."""
    config = prepared.config
    fp = volume_rules.volume_fingerprint(prepared.train, prepared.val, config.data, config.model.in_channels,
                                         config.model.classes)  # fmt: skip
    device_type = "cuda" if device.type == "cuda" else "cpu"
    fixed = plan.fixed
    patch_choice = volume_rules.patch_shape(fp, device_type)
    patch = plan.fixed.get("data.patch_shape", patch_choice.value)
    pool, kernels = volume_rules.topology(patch, fp.median_spacing)
    model = widened(config.model, volume_rules.WIDTHS_3D[device_type][0])
    model.dims, model.pool, model.kernels, model.depth, model.norm = 3, pool, kernels, len(pool), "instance"
    seconds = budget.training_seconds(budget_seconds)
    measured: dict[int, float] = {}

    def rate(width: int) -> float:
        if width not in measured:
            measured[width] = speed(widened(model, width), patch, volume_rules.BATCH_3D, device, None, channels_last=False)
        return measured[width]

    needs_speed = budget_seconds > 0 and "model.dims" not in fixed
    steps_3d = rate(model.base_width) * seconds if needs_speed else None
    if plan.take(volume_rules.dims(fp, steps_3d)) == 2:
        return fp, measured
    plan.take(rules.model_norm())
    plan.take(Choice("data.patch_shape", patch, patch_choice.reason))
    plan.take(Choice("model.depth", len(pool), f"pooled until a side would drop below {volume_rules.MIN_FEATURE} voxels"))
    plan.take(Choice("model.pool", pool, (
        f"spacing {list(fp.median_spacing)}: an axis is pooled only while its spacing is within "
        f"{volume_rules.COARSE:.0f}x of the finest, so coarse slices are pooled in-plane first (nnU-Net)")))
    plan.take(Choice("model.kernels", kernels, "3 along axes as fine as the finest, 1 along still-coarse ones (nnU-Net)"))
    plan.take(Choice("predict.window", patch, "the training patch: sliding windows of it, Gaussian-blended"))
    plan.take(Choice("train.batch_size", volume_rules.BATCH_3D, "nnU-Net's 3D batch: patches are large"))
    plan.take(Choice("train.memory_layout", "contiguous", "contiguous 3D tensors (the 3D plan does not time layouts)"))
    _width_and_steps(plan, budget_seconds, device_type, rate)
    mode = plan.take(volume_rules.normalization(fp))
    if mode == "ct":
        for choice in volume_rules.ct_values(fp):
            plan.take(choice)
    plan.take(Choice("train.loss", dice_loss_for(fp.classes), "Dice + cross-entropy (nnU-Net)"))
    plan.take(Choice("data.foreground_oversample", 0.33, "a third of the patches centred on foreground (nnU-Net)"))
    plan.take(Choice("data.augment", "strong", "mirroring, in-plane quarter turns and intensity augmentation (nnU-Net's)"))
    processes = max(1, plan.take(rules.workers(device_type, os.cpu_count() or 1)))
    decoded = fp.volumes * fp.median_shape[0] * fp.median_shape[1] * fp.median_shape[2] * (4 * fp.channels + 1)
    fits = decoded * processes <= available_memory(torch.device("cpu")) // 4
    plan.take(Choice("data.cache", "ram" if fits else "none", (
        f"the decoded volumes take about {decoded / 2**20:.0f} MiB in each of {processes} loader processes: "
        + ("kept in memory" if fits else "over a quarter of the free memory, read from disk each time"))))
    return fp, measured


def _width_and_steps(plan: Decisions, budget_seconds: float, device_type: str, rate: Callable[[int], float]) -> None:
    if budget_seconds <= 0:
        plan.take(Choice("model.base_width", volume_rules.WIDTHS_3D[device_type][-1], "no time budget: a wide network"))
        plan.take(Choice("train.steps", NO_BUDGET_STEPS, f"no time budget: {NO_BUDGET_STEPS} steps"))
        plan.take(Choice("train.val_every", NO_BUDGET_STEPS // 10, "ten validations"))
        return
    plan.take(Choice("train.time", float(budget_seconds), "the time budget: training stops within it"))
    widths = [plan.fixed["model.base_width"]] if "model.base_width" in plan.fixed else list(volume_rules.WIDTHS_3D[device_type])
    choice, _ = budget.budget_width(budget_seconds, device_type, rate, widths)
    width = plan.take(choice)
    plan.take(budget.budget_steps(budget_seconds, rate(width)))


def format_volume_facts(fp: VolumeFingerprint, measured: dict[int, float]) -> str:
    """The volume fingerprint as a table (the choices follow it as in the image plan)."""
    stats = fp.foreground_intensity
    facts = [
        ["volumes", f"{fp.volumes} ({fp.train_volumes} for training), {fp.channels} channel(s), modality {fp.modality or '-'}"],
        ["shape (z y x)", f"median {'x'.join(map(str, fp.median_shape))} voxels"],
        ["spacing (z y x)", f"median {list(fp.median_spacing)}, anisotropy {fp.anisotropy:.1f}, depth/extent {fp.flatness:.2f}"],
        ["foreground", f"{fp.foreground:.1%} of the voxels; intensity p0.5 {stats['p0.5']:.4g}, p99.5 {stats['p99.5']:.4g}, "
                       f"mean {stats['mean']:.4g}, std {stats['std']:.4g}"],  # fmt: skip
        ["measured speed", ", ".join(f"width {w}: {r:.2f} steps/s (3D)" for w, r in measured.items()) or "-"],
    ]
    return format_table(["dataset", "fingerprint"], facts)
