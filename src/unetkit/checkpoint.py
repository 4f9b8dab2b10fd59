"""Checkpoints: one file with weights, the whole config and training state.

Written atomically (temporary file, fsync, rename) so a crash never leaves a half-written file in
place of a good one; loaded with ``weights_only=True`` so a file can never run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from unetkit.atomic import atomic_path
from unetkit.config import Config
from unetkit.errors import CheckpointError, ConfigError

FORMAT = "unetkit-checkpoint"
VERSION = 1


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
