"""The Python API: plan, train, load and evaluate from a notebook, as the command line does.

Every function takes the command line's settings as keywords: a flag's name (``base_width=16``
for ``--base-width 16``, ``instance_target="none"``) or a config path
(``**{"model.base_width": 16}``). A value you set is kept; the plan chooses the rest from the data,
the machine and the time budget.

Example:
    >>> import unetkit
    >>> run = unetkit.train("data/cells", "runs/cells", time="10m")
    >>> model = unetkit.load(run)
    >>> result = model("data/cells/images/cell_01.png")
    >>> result.mask.shape, result.probabilities.shape
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from time import monotonic
from typing import Any, Mapping, Sequence, Union

from unetkit.atomic import atomic_write_text
from unetkit.config import Config, Engine, parse_duration
from unetkit.config.flags import setting_paths, with_values
from unetkit.device import select_device
from unetkit.device.distributed import from_main, launched_as_main, setup
from unetkit.errors import ConfigError
from unetkit.inference.ensemble import AnyPredictor, load_predictor
from unetkit.planning.plan import Plan, format_plan, make_plan
from unetkit.planning.policy import budget_seconds, classes_for, configured, fixed_values
from unetkit.data.prepare import PreparedData, discover_data, prepare_data

log = logging.getLogger("unetkit")

PathLike = Union[str, Path]
Duration = Union[float, str]


@dataclass(frozen=True)
class Run:
    """A trained run, as ``train`` returns it.

    Attributes:
        folder: the run folder: config.yaml, plan.yaml, metrics.csv, curves.png, samples/, the checkpoints.
        best_checkpoint: ``best.pt``, the weights that scored best on validation; a run of folds: the
            folder itself, whose folds' ``best.pt`` ``load`` averages.
        metrics: the last validation's figures (``val_dice``, ``val_iou``, ``val_accuracy``,
            ``val_loss``, ``step``, ...); a run of folds: the cross-validation report (``cv.json``).
    """

    folder: Path
    best_checkpoint: Path
    metrics: dict[str, Any]


def plan(
    data: PathLike, time: Duration | None = None, *, device: str = "auto", preset: str | None = None,
    classes: int | None = None, in_channels: int | None = None, **settings: Any,
) -> Plan:
    """The configuration ``train`` would choose for a dataset on this machine, every choice with its reason.

    Args:
        data: the dataset folder, in any layout unetkit reads (e.g. ``images/`` + ``masks/``).
        time: the training budget, in seconds or as text (``"10m"``, ``"1h30m"``). None: 30 minutes,
            unless ``steps`` or ``epochs`` set the run's length.
        device: ``"auto"`` (a CUDA GPU if there is one), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; the
            plan measures training speeds on it.
        preset: a named setting (``"paper"``: Ronneberger et al. 2015); its values are kept.
        classes: 1 (binary, sigmoid) or K >= 2 (softmax); None: from the masks.
        in_channels: the image channels; None: from the images (grey 1, colour 3).
        **settings: values to keep instead of planning them (see the module docstring).

    Returns:
        The Plan: ``plan.config`` (the Config ``train`` would use), ``plan.choices`` (each setting's
        path, value and reason), ``plan.fingerprint`` (what was measured of the data);
        ``plan.to_yaml()`` writes it as ``unetkit plan`` does.

    Example:
        >>> chosen = unetkit.plan("data/cells", time="10m", base_width=16)
        >>> chosen.config.model.base_width
        16
    """
    values = _values(time, settings)
    prepared = prepare_data(configured(data, values, preset=preset), classes_for(classes, preset), in_channels)
    return _plan_for(prepared, values, preset, device)


def train(
    data: PathLike, out: PathLike, time: Duration | None = None, *, device: str = "auto",
    config: PathLike | Config | None = None, preset: str | None = None, classes: int | None = None,
    in_channels: int | None = None, use_plan: bool | None = None, resume: bool = False,
    save_weight_maps: bool = False, **settings: Any,
) -> Run:
    """Train a U-Net on a folder of images and masks into a run folder.

    Args:
        data: the dataset folder, in any layout unetkit reads (e.g. ``images/`` + ``masks/``).
        out: the run folder (created if missing).
        time: the wall-clock budget, in seconds or as text (``"10m"``); planning is part of it.
            None: 30 minutes, unless ``steps`` or ``epochs`` set the run's length.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        config: start from this config (a YAML file such as a run's ``config.yaml``, or a Config).
        preset: a named setting (``"paper"``); ``settings`` override its values.
        classes: 1 (binary, sigmoid) or K >= 2 (softmax); None: from the masks.
        in_channels: the image channels; None: from the images.
        use_plan: plan every value you did not set from the data, the machine and the budget (as
            ``plan`` shows); False: the config's defaults. None: plan unless ``config`` is given.
        resume: continue the run in ``out`` from its ``last.pt`` (a run of folds: the fold it
            stopped in); only the run's length, workers and pixel limit may change.
        save_weight_maps: also draw the training weight maps into ``out/weight_maps/``.
        **settings: values to keep (see the module docstring); ``folds=5`` trains every fold into
            ``out/fold_K/``.

    Returns:
        The Run: its ``folder``, ``best_checkpoint`` and final ``metrics``.

    Example:
        >>> run = unetkit.train("data/cells", "runs/cells", time="10m", instance_target="none")
        >>> run.metrics["val_dice"]
    """
    from unetkit.training.folds import fit_run
    from unetkit.training.run_state import resumed_config

    started, out, values = monotonic(), Path(out), _values(time, settings)
    if resume:
        resumed = resumed_config(out, data, values)
        prepared = prepare_data(resumed, resumed.model.classes, resumed.model.in_channels, keep_labels=True)
    else:
        prepared = prepare_data(configured(data, values, config, preset), classes_for(classes, preset), in_channels)
        if use_plan or (use_plan is None and config is None):
            prepared = _planned(prepared, values, preset, device, out)
    if save_weight_maps and launched_as_main():
        from unetkit.data.prepare import save_weight_maps as draw_weight_maps

        written = draw_weight_maps(prepared, out / "weight_maps")
        log.info("wrote %d weight map image(s) into %s", len(written), out / "weight_maps")
    one_fold = "data.fold" in values
    metrics = fit_run(prepared, out, resume=resume, device=device, one_fold=one_fold, started=started)
    every_fold = prepared.config.data.folds > 1 and not one_fold
    return Run(out, out if every_fold else out / "best.pt", metrics)


def load(
    run_or_checkpoint: Run | PathLike | Sequence[PathLike], device: str = "auto", *, precision: str = "auto",
    engine: Engine = "torch", onnx: PathLike | None = None, postprocess: bool = True, **settings: Any,
) -> AnyPredictor:
    """A predictor for a trained model: one checkpoint, or the average of several (a run of folds).

    Args:
        run_or_checkpoint: a Run, a checkpoint (``best.pt``, ``.safetensors``), a run folder (its
            ``best.pt``; a run of folds: every fold's), an ONNX ensemble folder, or a list of these.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        precision: ``"auto"`` (on a CPU what a short probe measures faster), ``"32"``, ``"bf16"``, ``"fp16"``.
        engine: ``"torch"``, or ``"onnxruntime"`` for the exported ONNX model.
        onnx: the ONNX file or ensemble folder for ``engine="onnxruntime"`` (default: beside the checkpoint).
        postprocess: apply the post-processing chosen on validation (threshold, small objects, watershed).
        **settings: prediction settings to use instead of the checkpoint's: ``tile_size``,
            ``overlap``, ``blend``, ``tta``, ``threshold``, ``max_pixels``.

    Returns:
        A predictor: call it on an image array (H, W[, C]) or an image file for a Result
        (``mask``, ``probabilities``, ``instances``); ``predict_image`` gives the raw probabilities.

    Example:
        >>> model = unetkit.load("runs/cells", device="cpu", tta=True)
        >>> result = model("cell_01.png")
        >>> result.mask.max(), result.instances.max()
    """
    paths = run_or_checkpoint.best_checkpoint if isinstance(run_or_checkpoint, Run) else run_or_checkpoint
    return load_predictor(paths, device=device, precision=precision, engine=engine, onnx_path=onnx,
                          postprocess=postprocess, settings=setting_paths(settings))  # fmt: skip


def evaluate(
    predictor_or_path: AnyPredictor | Run | PathLike, data: PathLike, *, instances: bool | None = None,
    layout: str | None = None, device: str = "auto", html: PathLike | None = None, skip_failed: bool = False,
) -> dict[str, Any]:
    """Per-class Dice, IoU and accuracy of a model on a dataset with masks, at full resolution.

    Args:
        predictor_or_path: a predictor from ``load``, or anything ``load`` takes.
        data: a dataset folder with masks (train and validation images both count).
        instances: also the object metrics (DSB score, AP, F1, PQ, AJI, SEG). None: where the model
            learned instance maps.
        layout: the dataset layout (default: the model's, detected where ``"auto"``).
        device: where a model loaded here runs.
        html: also write an HTML report here (per image: truth, prediction, errors).
        skip_failed: an image that cannot be read or predicted is listed under ``failed`` instead
            of ending the evaluation with its error.

    Returns:
        The report: ``dice``, ``iou``, ``pixel_accuracy`` (foreground means over all pixels),
        ``per_class``, ``images`` (each image's figures), ``failed``, and the object metrics where
        computed; ``raw``: the same without the post-processing chosen on validation, where it has some.

    Example:
        >>> report = unetkit.evaluate("runs/cells", "data/cells-test")
        >>> round(report["dice"], 3)
    """
    from unetkit.inference.evaluate import evaluate_records, summarize

    predictor = predictor_or_path if hasattr(predictor_or_path, "predict_image") else load(predictor_or_path, device)
    config = with_values(predictor.config, {"data.layout": layout} if layout else {})
    if config.model.dims == 3 and html:
        raise ConfigError("HTML reports are 2D-only; a 3D model is evaluated by its per-class Dice and IoU (and objects)")
    discovery = discover_data(config, str(data))
    records = discovery.records + discovery.val_records
    # Object metrics whenever asked, or the model learned instance maps (it was trained for objects).
    options = {"instances": bool(config.model.instance_maps) if instances is None else instances, "skip_failed": skip_failed}
    if html:
        from unetkit.report.sources import evaluate_and_report

        return summarize(evaluate_and_report(html, predictor, records, config, **options))
    return summarize(evaluate_records(predictor, records, config, **options))


def _values(time: Duration | None, settings: Mapping[str, Any]) -> dict[str, Any]:
    """config path -> value of the keywords given, the budget among them."""
    values = setting_paths(settings)
    if time is not None:
        values["train.time"] = parse_duration(time) if isinstance(time, str) else float(time)
    return values


def _plan_for(prepared: PreparedData, values: Mapping[str, Any], preset: str | None, device: str) -> Plan:
    fixed = fixed_values(prepared.config, values, preset)
    budget = budget_seconds(prepared.config, fixed)
    return make_plan(prepared, budget_seconds=budget, device=select_device(device), fixed=fixed)


def _planned(prepared: PreparedData, values: Mapping[str, Any], preset: str | None, device: str, out: Path) -> PreparedData:
    """``prepared`` with the plan's config; rank 0 shows the plan and writes ``out/plan.yaml``."""
    chosen = _plan_for(prepared, values, preset, device)
    if launched_as_main():
        log.info("%s", format_plan(chosen))
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "plan.yaml", chosen.to_yaml())
    # Each rank measured its own speeds; all must train rank 0's plan (the one plan.yaml shows).
    return dataclasses.replace(prepared, config=from_main(chosen.config, setup(device)))
