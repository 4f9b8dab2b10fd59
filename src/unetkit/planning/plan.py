"""``make_plan``: a prepared dataset, the machine and a budget -> a complete Config, every value the
plan sets with its reason. Values the user set explicitly are kept ("set by you")."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
import yaml

from unetkit.config import Config
from unetkit.data.volumes import is_volume_record
from unetkit.device import PrecisionChoice, resolve_execution, resolve_precision
from unetkit.device.layout import LAYOUT_NAMES
from unetkit.errors import ConfigError
from unetkit.model.sizes import valid_output_size
from unetkit.planning import budget, rules, targets
from unetkit.planning.fingerprint import Fingerprint, fingerprint
from unetkit.planning.probe import available_memory, widened
from unetkit.planning.rules import Choice
from unetkit.planning.volume_plan import format_volume_facts, plan_volumes
from unetkit.planning.volume_rules import VolumeFingerprint
from unetkit.tables import format_table
from unetkit.data.prepare import PreparedData, as_slices
from unetkit.training.speed import measure_steps_per_second, training_subject

SET_BY_YOU = "set by you"
# (model config, patch, batch, device, dtype, channels_last=...) -> steps/s; tests pass a fake
SpeedProbe = Callable[..., float]
LAYOUT = "train.memory_layout"


@dataclass
class Plan:
    config: Config
    choices: list[Choice]
    fingerprint: Fingerprint
    measured: dict[int, float] = field(default_factory=dict)  # base width -> optimizer steps/s

    def to_dict(self) -> dict[str, Any]:
        plain = {
            "fingerprint": self.fingerprint.to_dict(),
            "measured_steps_per_second": {f"width {w}": round(r, 3) for w, r in self.measured.items()},
            "choices": [{"path": c.path, "value": c.value, "reason": c.reason} for c in self.choices],
            "config": self.config.to_dict(),
        }
        return json.loads(json.dumps(plain))  # tuples -> lists, numpy scalars -> numbers: safe YAML

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, width=120)


class Decisions:
    """Collects choices in order; a path the user fixed keeps the user's value."""

    def __init__(self, config: Config, fixed: Mapping[str, Any]) -> None:
        self.tree = config.to_dict()
        self.fixed = fixed
        self.choices: list[Choice] = []

    def value(self, choice: Choice) -> Any:
        """What ``take`` would record: the user's value, else the choice's."""
        return self.fixed.get(choice.path, choice.value)

    def take(self, choice: Choice) -> Any:
        if choice.path in self.fixed:
            choice = Choice(choice.path, self.fixed[choice.path], SET_BY_YOU)
        *parents, name = choice.path.split(".")
        node = self.tree
        for parent in parents:
            node = node[parent]
        node[name] = choice.value
        self.choices.append(choice)
        return choice.value

    def config(self) -> Config:
        return Config.from_dict(self.tree)  # checks every planned value's name and type


def make_plan(
    prepared: PreparedData,
    *,
    budget_seconds: float,
    device: torch.device,
    fixed: Mapping[str, Any],
    speed: SpeedProbe = measure_steps_per_second,
) -> Plan:
    """The plan for ``prepared`` on ``device``: ``budget_seconds`` of wall time (0: none, steps then
    follow a dataset rule); ``fixed`` maps config paths the user set to their values."""
    config = prepared.config
    if prepared.train and is_volume_record(prepared.train[0]):
        return _volume_plan(prepared, budget_seconds, device, fixed, speed)
    fp = fingerprint(prepared.train, prepared.val, config.data, config.model.in_channels, config.model.classes)
    device_type = "cuda" if device.type == "cuda" else "cpu"
    plan = Decisions(config, fixed)
    plan.take(rules.model_norm())
    target = plan.take(targets.instance_target(fp, config.data.labels.invert))
    mode = plan.take(rules.normalization(fp))
    if mode == "meanstd":
        plan.take(Choice("data.normalize.mean", fp.mean, f"measured on {fp.sampled} sampled images"))
        plan.take(Choice("data.normalize.std", fp.std, f"measured on {fp.sampled} sampled images"))
    resized = plan.take(rules.image_size(fp, fixed.get("data.patch_size") or rules.MAX_PATCH[device_type]))
    patch, depth = _patch_and_depth(plan, rules.patch_size(fp, resized, device_type))
    plan.take(rules.tile_size(patch, depth, plan.tree["model"]["padding"]))
    model = plan.config().model
    # Widths are measured in this dtype: yours, the GPU's, or float32 where auto measures bfloat16 later.
    provisional = resolve_precision(device, fixed.get("train.precision", "auto"))
    rates: dict[tuple[int, int, torch.dtype | None, bool], float] = {}

    def speed_of(width: int, batch: int, dtype: torch.dtype | None = provisional.dtype,
                 channels_last: bool = fixed.get(LAYOUT) != "contiguous") -> float:  # fmt: skip
        """Measured once per setting: the widths, the layouts and the dtypes share measurements."""
        key = (width, batch, dtype, channels_last)
        if key not in rates:
            rates[key] = speed(widened(model, width), patch, batch, device, dtype, channels_last=channels_last)
        return rates[key]

    def execution(width: int, batch: int) -> float:
        subject = functools.partial(training_subject, widened(model, width), patch, batch)
        return _execution(plan, device, provisional, functools.partial(speed_of, width, batch), subject)

    batch_choice = rules.batch_size(patch, budget.MAX_WIDTH[device_type], device_type, available_memory(device))
    batch, steps, rate, measured = _steps(plan, fp, budget_seconds, device_type, speed_of, execution, batch_choice, resized)
    val_pixels = fp.pixels_at(resized)
    if not budget_seconds:  # with a budget the trainer spaces validations by their measured cost
        plan.take(budget.val_every(steps, rate, batch, patch, len(prepared.val), val_pixels, budget_seconds))
    plan.take(targets.loss(fp))
    weight_maps = plan.take(targets.weight_map(fp, target))
    plan.take(rules.color_augment(fp))
    plan.take(rules.foreground_oversample(fp, patch, resized))
    plan.take(rules.augment(rules.passes(steps, batch, patch, fp, resized)))
    processes = max(1, plan.take(rules.workers(device_type, os.cpu_count() or 1)))  # each holds its own cache
    plan.take(rules.cache(fp, weight_maps, processes, available_memory(torch.device("cpu"))))
    return Plan(plan.config(), plan.choices, fp, measured)


def _volume_plan(
    prepared: PreparedData, budget_seconds: float, device: torch.device, fixed: Mapping[str, Any], speed: SpeedProbe
) -> Plan:
    """3D, or a 2D U-Net on the volumes' slices planned as images, as ``plan_volumes`` decides."""
    decisions = Decisions(prepared.config, fixed)
    fp, measured = plan_volumes(decisions, prepared, budget_seconds, device, speed)
    if decisions.tree["model"]["dims"] == 3:
        return Plan(decisions.config(), decisions.choices, fp, measured)
    sliced = as_slices(dataclasses.replace(prepared, config=decisions.config()))
    plan = make_plan(sliced, budget_seconds=budget_seconds, device=device, fixed=fixed, speed=speed)
    plan.choices.insert(0, decisions.choices[0])
    return plan


def _patch_and_depth(plan: Decisions, patch_choice: Choice) -> tuple[int, int]:
    """data.patch_size and model.depth; with `valid` padding the patch becomes an input size that
    the depth takes (one you set must be one: a one-line error names the nearest)."""
    padding = plan.tree["model"]["padding"]
    depth_choice = rules.depth(plan.value(patch_choice), padding)
    if padding == "valid":
        patch_choice = rules.valid_patch(plan.value(patch_choice), plan.value(depth_choice))
    patch, depth = plan.take(patch_choice), plan.take(depth_choice)
    if padding == "valid":
        try:
            valid_output_size(patch, depth)
        except ConfigError as exc:
            raise ConfigError(f"--patch-size {patch}: {exc}") from None
    return patch, depth


def _steps(
    plan: Decisions, fp: Fingerprint, budget_seconds: float, device_type: str,
    speed_of: Callable[[int, int], float], execution: Callable[[int, int], float], batch_choice: Choice, resized: int,
) -> tuple[int, int, float, dict[int, float]]:
    """Batch, width and steps: fitted to the budget from measured speeds (the smallest batch where
    even the narrowest width falls short of the steps wanted), or by the dataset rule; then
    ``execution(width, batch)`` chooses the precision and layout and gives their speed."""
    patch = plan.tree["data"]["patch_size"]
    batch = plan.value(batch_choice)
    if budget_seconds <= 0:
        width = plan.take(budget.no_budget_width())
        measured = {width: speed_of(width, plan.take(batch_choice))}
        rate = execution(width, batch)
        return batch, plan.take(budget.dataset_steps(fp, batch, patch, resized, rate)), rate, measured
    plan.take(Choice("train.time", float(budget_seconds), "the time budget: training stops within it"))
    fixed_width = plan.fixed.get("model.base_width")
    widths = [fixed_width] if fixed_width else None
    choice, measured = budget.budget_width(budget_seconds, device_type, lambda w: speed_of(w, batch), widths)
    smaller = budget.smaller_batch(batch, patch, measured[plan.value(choice)], budget_seconds)
    if smaller.value < batch and "train.batch_size" not in plan.fixed:
        batch_choice, batch = smaller, smaller.value
        choice, measured = budget.budget_width(budget_seconds, device_type, lambda w: speed_of(w, batch), widths)
    plan.take(batch_choice)
    width = plan.take(choice)
    rate = execution(width, batch)
    return batch, plan.take(budget.budget_steps(budget_seconds, rate)), rate, measured


def _execution(
    plan: Decisions, device: torch.device, provisional: PrecisionChoice,
    speed_in: Callable[[torch.dtype | None, bool], float], subject: Callable[[bool], dict[str, Any]],
) -> float:
    """train.memory_layout and train.precision together, from the planned training step itself
    (``subject(channels_last)`` says which), as ``resolve_execution`` times it: each layout you
    left open in the precision it resolves to there (``speed_in(dtype, channels_last)``; cached per
    machine and step). Returns the chosen pair's speed."""
    requested_layout = plan.fixed.get(LAYOUT, "auto")
    chosen = resolve_execution(device, plan.fixed.get("train.precision", "auto"), requested_layout, speed_in, subject)
    layout, precision = chosen.layout, chosen.precision
    where = _where(subject(layout.channels_last))
    plan.take(Choice(LAYOUT, layout.name, f"{layout.reason} ({where})"))
    plan.take(Choice("train.precision", precision.name, f"{precision.reason} ({where})"))
    return speed_in(provisional.dtype, layout.channels_last) * _gain(precision)


def _where(step: Mapping[str, Any]) -> str:
    """The planned step a measurement timed, in words."""
    return f"width {step['model']['base_width']}, {step['batch']} x {step['patch']}^2 px, {LAYOUT_NAMES[step['channels_last']]}"


def _gain(precision: PrecisionChoice) -> float:
    """How much faster than the provisional float32 the chosen dtype measured (1 where nothing was)."""
    return precision.bf16_speedup if precision.dtype is not None and precision.bf16_speedup else 1.0


def format_plan(plan: Plan) -> str:
    """The fingerprint, the measured speeds, then every choice with its reason, as tables."""
    fp = plan.fingerprint
    if isinstance(fp, VolumeFingerprint):
        rows = [[c.path, _value(c.value), c.reason] for c in plan.choices]
        return format_volume_facts(fp, plan.measured) + "\n\n" + format_table(["setting", "value", "reason"], rows)
    objects = fp.objects
    facts = [
        ["images", f"{fp.images} ({fp.train_images} for training); statistics from {fp.sampled}"],
        ["size (h x w)", f"median {_hw(fp.median_size)}, smallest {_hw(fp.min_size)}, largest {_hw(fp.max_size)}"],
        ["pixels", (
            f"{fp.channels} channel(s), {fp.bit_depth} bit, {fp.jpeg_share:.0%} JPEG, {fp.coloured:.0%} coloured "
            f"(hues over {fp.hue_range:.0f} degrees), {fp.dark:.0%} near black"
        )],
        ["intensity (0..1)", f"percentiles {list(fp.percentiles)}, mean {fp.mean}, std {fp.std}"],
        ["per image", f"median std {fp.image_std} (contrast), std of image means {fp.mean_spread}"],
        ["classes", f"{fp.classes}, pixel shares {fp.foreground}"],
        ["objects", (
            f"{objects.source}: {objects.per_image:.0f} per image, median area {objects.median_area:.0f} px "
            f"(diameter {objects.median_diameter:.0f}), width {objects.median_thickness:.1f} px, {objects.touching:.0%} touching"
        )],
        ["measured speed", ", ".join(f"width {w}: {r:.2f} steps/s" for w, r in plan.measured.items()) or "-"],
    ]
    rows = [[c.path, _value(c.value), c.reason] for c in plan.choices]
    return format_table(["dataset", "fingerprint"], facts) + "\n\n" + format_table(["setting", "value", "reason"], rows)


def _hw(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in value) + "]"
    return str(value)
