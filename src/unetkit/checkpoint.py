"""Checkpoints: one file with weights, the whole config and training state; and loading the weights
of either a checkpoint or a safetensors export (``load_weights``), which carries its config too.

Written atomically (temporary file, fsync, rename) so a crash never leaves a half-written file in
place of a good one; loaded with ``weights_only=True`` so a file can never run code.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from unetkit.atomic import atomic_path
from unetkit.config import Config
from unetkit.errors import CheckpointError, ConfigError, UnetkitError

FORMAT = "unetkit-checkpoint"
VERSION = 1
SAFETENSORS_FORMAT = "unetkit-weights"  # the metadata marker of a weights export (inference.export)


def save_checkpoint(
    path: str | Path,
    config: Config,
    model_state: dict[str, torch.Tensor],
    **state: Any,
) -> None:
    """Save weights + config + any training state (plain types and tensors only)."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": config.to_dict(),
        "model": {k: v.detach().cpu() for k, v in model_state.items()},
        **state,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint safely; the ``config`` entry is returned as a ``Config``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file; pass the best.pt or last.pt of a run")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path}: refused to load: it holds Python objects beyond tensors and plain data "
            "(a pickle that could run code); only unetkit checkpoints are accepted"
        ) from None
    except Exception as exc:  # torch raises many types for foreign or truncated files
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(exc).__name__}); "
            "it may be truncated or another kind of file"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a unetkit checkpoint (no '{FORMAT}' marker)")
    if payload.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: written by a newer unetkit (format {payload['version']}); upgrade unetkit")
    weights = payload.get("model")
    if "config" not in payload or not isinstance(weights, dict) or not all(map(torch.is_tensor, weights.values())):
        raise CheckpointError(f"{path}: a damaged unetkit checkpoint (no readable config and weights); use another copy")
    try:
        payload["config"] = Config.from_dict(payload["config"])
    except ConfigError as exc:
        raise CheckpointError(f"{path}: its config cannot be read: {exc}") from None
    return payload


def load_safetensors(path: str | Path) -> tuple[Config, dict[str, torch.Tensor]]:
    """(config, model state) from a file written by ``export_safetensors``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weights file; create it with `unetkit export --format safetensors`")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata: dict[str, Any] = handle.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    if metadata.get("format") != SAFETENSORS_FORMAT:
        raise CheckpointError(f"{path}: safetensors without unetkit's config; export it with `unetkit export`")
    try:
        config = Config.from_dict(json.loads(metadata["config"]))
    except (UnetkitError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: its config cannot be read: {exc}") from None
    return config, state


def load_weights(path: str | Path) -> tuple[Config, dict[str, torch.Tensor]]:
    """(config, model state) from a checkpoint or a ``.safetensors`` weights export."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return load_safetensors(path)
    payload = load_checkpoint(path)
    return payload["config"], payload["model"]
