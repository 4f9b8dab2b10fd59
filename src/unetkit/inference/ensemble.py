"""Ensembles: several checkpoints (the folds of a run) behind the Predictor interface.

``load_predictor`` accepts a checkpoint (``.pt`` / ``.safetensors``), a run folder (its
``best.pt``), a folds run folder (``RUN/fold_K/best.pt``, preferred over a ``RUN/best.pt`` beside
them), several of these, or an ONNX ensemble folder (``export_ensemble_onnx``). One checkpoint
gives a plain ``Predictor``; several an ``EnsemblePredictor``, which averages the members'
probabilities. Each member keeps its own config, checked when it was built: preprocessing
(channels, normalisation, resize), network and tiling; settings given to ``load_predictor``
(``--tile-size``, ``--tta``, ...) reach every member before that check. Post-processing is the
ensemble's own ``config.predict``.

Post-processing of an ensemble is derived from the members' settings (each tuned on its own
fold's validation images, or all alike by ``tuning.tune_checkpoints`` on the union of them):
every number is the lower median of the members' values (a value one of them chose), keep-largest
holds where most members chose it, the watershed seeding is the most frequent one (ties: the
first member's) with the median of its parameter over the members that chose it.

ONNX export of an ensemble is a folder: ``member_K.onnx`` per member and ``manifest.json``
(format ``unetkit-onnx-ensemble``; per member its ONNX file, source checkpoint and whole config),
so the folder alone runs with ``--engine onnxruntime``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import statistics
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import numpy as np
import torch

from unetkit.atomic import atomic_write_text
from unetkit.checkpoint import load_weights
from unetkit.config import Config, Engine, PredictConfig
from unetkit.device import select_device
from unetkit.errors import CheckpointError, ConfigError, UnetkitError
from unetkit.inference.export import export_checkpoint
from unetkit.inference.networks import OnnxRuntimeNetwork
from unetkit.inference.postprocess import labels_from_probabilities
from unetkit.inference.predictor import Predictor
from unetkit.inference.result import ImageLike, Result, predict
from unetkit.inference.settings import settled

PathLike = Union[str, Path]
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "unetkit-onnx-ensemble"
FOLD_FOLDER = re.compile(r"fold_(\d+)")
MEDIAN_FIELDS = ("threshold", "min_object_size", "instance_threshold", "instance_min_size")
SEED_PARAMETER = {
    "distance": "instance_min_distance", "h-maxima": "instance_h", "probability": "instance_seed_threshold",
    "maps": "instance_map_h", "auto": "instance_map_h",
}


class EnsemblePredictor:
    """Probabilities averaged over member predictors, labelled with the post-processing combined from
    theirs (``config.predict``). ``predict_image``, ``labels``, ``config`` and ``device`` as Predictor's."""

    def __init__(self, members: Sequence[Predictor]) -> None:
        if not members:
            raise ConfigError("an ensemble needs at least one member")
        predict = dataclasses.replace(
            members[0].config.predict, **combined_postprocessing([member.config.predict for member in members])
        )
        self.members = list(members)
        self.config: Config = dataclasses.replace(members[0].config, predict=predict)
        self.device = members[0].device

    def __call__(self, image: ImageLike) -> Result:
        """The mask, class probabilities and (on first use) objects of an image array or file."""
        return predict(self, image)

    def predict_image(self, image: np.ndarray) -> np.ndarray:
        """The members' probabilities (K, H, W) float32 averaged, each from its own preprocessing."""
        total = self.members[0].predict_image(image)
        for member in self.members[1:]:
            total += member.predict_image(image)
        return total / len(self.members)

    def labels(self, probabilities: np.ndarray | torch.Tensor) -> np.ndarray:
        """Class ids uint8 (H, W) with the ensemble's post-processing."""
        return labels_from_probabilities(probabilities, self.config)

    @property
    def min_image_side(self) -> int:
        return max(member.min_image_side for member in self.members)

    def check_image_size(self, height: int, width: int) -> None:
        """Raise DataError for an image some member cannot take (``Predictor.check_image_size``)."""
        max(self.members, key=lambda member: member.min_image_side).check_image_size(height, width)

    def tile_count(self, height: int, width: int) -> int:
        """Network inputs for a height x width image: every member's."""
        return sum(member.tile_count(height, width) for member in self.members)


AnyPredictor = Union[Predictor, EnsemblePredictor]


def combined_postprocessing(settings: Sequence[PredictConfig]) -> dict:
    """The ensemble's post-processing fields from its members' (rule in the module docstring)."""
    combined = {name: statistics.median_low([getattr(member, name) for member in settings]) for name in MEDIAN_FIELDS}
    combined["keep_largest"] = 2 * sum(member.keep_largest for member in settings) > len(settings)
    seeds = Counter(member.instance_seeds for member in settings).most_common(1)[0][0]
    parameter = SEED_PARAMETER[seeds]
    combined["instance_seeds"] = seeds
    combined[parameter] = statistics.median_low(
        [getattr(member, parameter) for member in settings if member.instance_seeds == seeds]
    )
    return combined


def checkpoint_paths(path_or_paths: PathLike | Sequence[PathLike]) -> list[Path]:
    """The checkpoint files that ``path_or_paths`` names (see the module docstring), in order."""
    items = _as_list(path_or_paths)
    if not items:
        raise ConfigError("no checkpoint given; pass a checkpoint file or a run folder")
    return list(dict.fromkeys(path for item in items for path in _resolve(item)))


def load_predictor(
    path_or_paths: PathLike | Sequence[PathLike],
    device: str = "auto",
    precision: str = "auto",
    engine: Engine = "torch",
    onnx_path: PathLike | None = None,
    postprocess: bool = True,
    settings: Mapping[str, Any] | None = None,
) -> AnyPredictor:
    """A Predictor for one checkpoint, an EnsemblePredictor for several (module docstring).

    ``engine="onnxruntime"`` runs each member's ONNX file beside its checkpoint (``best.onnx``),
    or the members of an ONNX ensemble folder given as ``onnx_path`` or as the path itself.
    ``postprocess=False`` drops the post-processing chosen on validation (``--no-postprocess``);
    ``settings`` (config path -> value: tiling, test-time augmentation, threshold) replace the
    members' own before each predictor checks them.
    """
    folder = _onnx_folder(path_or_paths, onnx_path)
    if folder is not None and engine != "onnxruntime":
        raise ConfigError(f"{folder} holds an ONNX ensemble: run it with --engine onnxruntime")
    if folder is not None:
        paths, members = _onnx_members(folder, device, postprocess, settings)
    else:
        paths = checkpoint_paths(path_or_paths)
        if engine == "onnxruntime" and onnx_path is not None and len(paths) > 1:
            raise ConfigError(f"--onnx {onnx_path}: {len(paths)} checkpoints need an ONNX ensemble folder "
                              "(`unetkit export --format onnx` of the run)")  # fmt: skip
        members = [Predictor.from_checkpoint(path, device, precision, engine, onnx_path, postprocess, settings)
                   for path in paths]  # fmt: skip
    _check_members(paths, [member.config for member in members])
    return members[0] if len(members) == 1 else EnsemblePredictor(members)


def export_checkpoints(path_or_paths: PathLike | Sequence[PathLike], fmt: str, out: PathLike, check: bool = True) -> Path:
    """`unetkit export`: one checkpoint as ``fmt`` (``export.export_checkpoint``), several as an
    ONNX ensemble folder."""
    paths = checkpoint_paths(path_or_paths)
    if len(paths) == 1:
        return export_checkpoint(paths[0], fmt, out, check=check)
    if fmt != "onnx":
        raise ConfigError(f"--format {fmt}: {len(paths)} checkpoints export as an ONNX ensemble folder; use --format onnx")
    return export_ensemble_onnx(paths, out, check=check)


def export_ensemble_onnx(path_or_paths: PathLike | Sequence[PathLike], out: PathLike, check: bool = True) -> Path:
    """Write the members of ``path_or_paths`` as ``out/member_K.onnx`` plus ``out/manifest.json``;
    each export is checked against PyTorch as ``unetkit export`` checks one. Returns ``out``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: an ensemble exports into a folder, and this is a file; choose a folder name")
    out.mkdir(parents=True, exist_ok=True)
    members = []
    for index, path in enumerate(checkpoint_paths(path_or_paths)):
        config, _ = load_weights(path)
        export_checkpoint(path, "onnx", out / f"member_{index}.onnx", check=check)
        members.append({"onnx": f"member_{index}.onnx", "source": str(path), "config": config.to_dict()})
    manifest = {"format": MANIFEST_FORMAT, "version": 1, "members": members}
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2))
    return out


def _as_list(path_or_paths: PathLike | Sequence[PathLike]) -> list[Path]:
    items = [path_or_paths] if isinstance(path_or_paths, (str, Path)) else list(path_or_paths)
    return [Path(item) for item in items]


def _resolve(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint file or run folder")
    folds = sorted(
        (int(match[1]), child) for child in path.iterdir() if child.is_dir() and (match := FOLD_FOLDER.fullmatch(child.name))
    )
    for _, fold in folds:
        if not (fold / "best.pt").is_file():
            raise CheckpointError(
                f"{fold}: no best.pt (has this fold finished training?); train it, or name the folds to use: "
                f"--checkpoint {path}/fold_0/best.pt {path}/fold_1/best.pt ..."
            )
    if folds:
        return [fold / "best.pt" for _, fold in folds]
    if (path / "best.pt").is_file():
        return [path / "best.pt"]
    raise CheckpointError(f"{path}: a folder with neither best.pt nor fold_*/best.pt; pass a checkpoint file or a run folder")


def _check_members(paths: Sequence[Path], configs: Sequence[Config]) -> None:
    """Members must predict the same classes and maps, or averaging their probabilities means nothing."""
    first = configs[0]
    for path, config in zip(paths[1:], configs[1:]):
        if config.model.classes != first.model.classes or config.data.labels != first.data.labels:
            raise CheckpointError(
                f"{path}: predicts other classes than {paths[0]} ({config.model.classes} vs {first.model.classes}, "
                "or another label mapping); an ensemble needs members trained on the same classes"
            )
        if config.model.instance_maps != first.model.instance_maps:
            raise CheckpointError(
                f"{path}: predicts instance maps {list(config.model.instance_maps)}, {paths[0]} "
                f"{list(first.model.instance_maps)}; an ensemble needs members trained with the same instance target"
            )


def _onnx_folder(path_or_paths: PathLike | Sequence[PathLike], onnx_path: PathLike | None) -> Path | None:
    """The ONNX ensemble folder named by ``onnx_path`` or as the only path, if any."""
    paths = _as_list(path_or_paths)
    candidates = ([Path(onnx_path)] if onnx_path is not None else []) + (paths if len(paths) == 1 else [])
    return next((candidate for candidate in candidates if (candidate / MANIFEST).is_file()), None)


def _onnx_members(
    folder: Path, device: str, postprocess: bool, settings: Mapping[str, Any] | None
) -> tuple[list[Path], list[Predictor]]:
    """(ONNX files, their predictors) of an ONNX ensemble folder."""
    manifest_path = folder / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != MANIFEST_FORMAT or not manifest["members"]:
            raise ValueError(f"not a {MANIFEST_FORMAT!r} with members")
        members = [(folder / member["onnx"], Config.from_dict(member["config"])) for member in manifest["members"]]
    except (UnetkitError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{manifest_path}: not a readable ONNX ensemble manifest ({exc}); export the run again") from None
    paths = [path for path, _ in members]
    return paths, [
        Predictor(OnnxRuntimeNetwork(path, select_device(device), config.model.classes), settled(config, postprocess, settings),
                  device=device)  # fmt: skip
        for path, config in members
    ]
