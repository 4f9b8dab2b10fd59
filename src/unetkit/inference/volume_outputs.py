"""`unetkit predict` of one volume: read it, predict it in 3D windows, write the label volume back in
the input's format and geometry (a NIfTI keeps its affine and header, a TIFF stack its spacing),
as nnU-Net writes its predictions: class ids, not display values; with ``--instances`` also the
objects (nuclei, cells) cut apart in 3D, one id each."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unetkit.data.volumes import is_nifti, read_volume, volume_stem, write_volume
from unetkit.data.writing import safe_stem, write_probabilities
from unetkit.errors import ConfigError
from unetkit.inference.postprocess import class_probabilities, instances_for
from unetkit.inference.predictor import Predictor

VOLUME_ONLY_FORMATS = ("png", "prob")  # png: the label volume in the input's format


def output_suffix(path: Path) -> str:
    """The input's own volume format: ``.nii.gz``, ``.nii`` or ``.tif``."""
    name = path.name.lower()
    if is_nifti(path):
        return ".nii.gz" if name.endswith(".gz") else ".nii"
    return ".tif"


def check_volume_options(formats: tuple[str, ...] | list[str], overlay: bool) -> None:
    """The outputs that are 2D-only say so in one line."""
    unsupported = [f"--format {name}" for name in formats if name not in VOLUME_ONLY_FORMATS]
    unsupported += ["--overlay"] * overlay
    if unsupported:
        raise ConfigError(f"{', '.join(unsupported)} is 2D-only; a 3D model writes label volumes (--format png) "
                          "and probabilities (--format prob)")  # fmt: skip


def predict_volume_file(
    predictor: Predictor, path: Path, out: Path, formats: tuple[str, ...] | list[str], instances: bool = False
) -> Path:
    """Predict the volume at ``path`` into ``out``: ``<stem>_mask`` in the input's format (class
    ids, the input's geometry); with ``prob`` also ``<stem>_prob.npy`` (float16, (K, D, H, W));
    with ``instances`` also ``<stem>_instances`` (object ids, uint16 or int32 past 65535 objects:
    the watershed of ``predict``'s settings, run on the whole volume). A 2D model predicts it
    slice by slice and cuts its objects in 3D all the same."""
    volume = read_volume(path, predictor.config.data.max_pixels)
    if predictor.config.model.dims == 3:
        probabilities = predictor.predict_image(volume.array)
    else:
        probabilities = np.stack([predictor.predict_image(plane) for plane in volume.array], axis=1)
    labels = predictor.labels(probabilities)
    stem = safe_stem(volume_stem(path))
    written = write_volume(out / f"{stem}_mask{output_suffix(path)}", labels.astype(np.uint8), volume)
    if "prob" in formats:
        write_probabilities(out / stem, class_probabilities(probabilities, predictor.config.model), "npy")
    if instances:
        objects = instances_for(probabilities, predictor.config)
        write_volume(out / f"{stem}_instances{output_suffix(path)}", _smallest_id_type(objects), volume)
    return written


def _smallest_id_type(objects: np.ndarray) -> np.ndarray:
    """Object ids as uint16 where they fit (what ITK-SNAP, napari and Fiji read everywhere)."""
    return objects.astype(np.uint16) if objects.max(initial=0) <= np.iinfo(np.uint16).max else objects
