"""Reading and writing volumes: NIfTI (``.nii``, ``.nii.gz``, via nibabel) and multi-page TIFF
stacks (z-y-x, via tifffile).

Volumes come back in one orientation whatever the file: arrays indexed (z, y, x) (nnU-Net's and
SimpleITK's order; NIfTI stores x first and is transposed), images as (D, H, W, C), labels as
(D, H, W), with the voxel spacing (z, y, x) from the NIfTI header or the ImageJ / OME metadata of
a TIFF (1, 1, 1 where a file has none). ``geometry`` keeps what writing a prediction back needs:
the NIfTI affine and header, or the TIFF's spacing. Every failure names the file.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import tifffile

from unetkit.atomic import atomic_path, atomic_write_bytes
from unetkit.config import DEFAULT_MAX_PIXELS
from unetkit.data.decoding import DECODE_ERRORS, decoding
from unetkit.data.records import Record
from unetkit.errors import DataError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_DTYPES = (np.uint8, np.uint16, np.float32)
_OME_SIZE = re.compile(r'PhysicalSize([XYZ])="([0-9.eE+-]+)"')


@dataclass
class Volume:
    """A volume's voxels (z, y, x[, c]), its spacing (z, y, x) and what writing it back needs."""

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    geometry: dict[str, Any] = field(default_factory=dict)  # nifti: affine + header; tiff: nothing more

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape[:3])


def is_nifti(path: str | Path) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def volume_stem(path: str | Path) -> str:
    """The name without its volume suffix: ``case_0000.nii.gz`` -> ``case_0000``."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def is_volume_file(path: str | Path) -> bool:
    """A NIfTI file, or a TIFF holding more than one plane (a z stack); hidden files are not."""
    path = Path(path)
    if path.name.startswith(".") or not path.is_file():
        return False
    if is_nifti(path):
        return True
    if path.suffix.lower() not in TIFF_SUFFIXES:
        return False
    try:
        with tifffile.TiffFile(path) as tif:
            return len(tif.pages) > 1
    except DECODE_ERRORS:
        return False


def volumes_in(folder: Path) -> list[Path]:
    """The volume files of ``folder`` (not recursive), sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if is_volume_file(path))


def is_volume_record(record: Record) -> bool:
    """Records of the volume layouts carry ``extra["volume"]``."""
    return bool(record.extra.get("volume"))


def read_volume(path: str | Path, max_voxels: int = DEFAULT_MAX_PIXELS) -> Volume:
    """The raw voxels of a NIfTI or TIFF volume, (z, y, x) or (z, y, x, c), in the file's dtype."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such volume file")
    with decoding(path, "volume"):
        return _read_nifti(path, max_voxels) if is_nifti(path) else _read_tiff(path, max_voxels)


def read_volume_image(paths: Sequence[Path], max_voxels: int = DEFAULT_MAX_PIXELS) -> Volume:
    """An image volume (D, H, W, C) from one file, or from one file per channel (``_0000``,
    ``_0001``... of the nnU-Net layout); uint8, uint16 and float32 are kept, the rest becomes float32."""
    volumes = [read_volume(path, max_voxels) for path in paths]
    arrays = [v.array if v.array.ndim == 4 else v.array[..., None] for v in volumes]
    for path, array in zip(paths[1:], arrays[1:]):
        if array.shape[:3] != arrays[0].shape[:3]:
            raise DataError(f"{path}: channel volume is {_dhw(array)} but {paths[0]} is {_dhw(arrays[0])}")
    image = arrays[0] if len(arrays) == 1 else np.concatenate([a.astype(np.float32) for a in arrays], axis=-1)
    if image.dtype not in IMAGE_DTYPES:
        image = image.astype(np.float32)
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise DataError(f"volume {paths[0]} has NaN or infinite voxels; replace them (e.g. with 0) and save it again")
    return Volume(image, volumes[0].spacing, volumes[0].geometry)


def read_volume_labels(path: Path, max_voxels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A label volume (D, H, W) of integers (class ids or instance ids)."""
    array = read_volume(path, max_voxels).array
    if array.ndim != 3:
        raise DataError(f"label volume {path} has shape {array.shape}; save it as one (z, y, x) volume of label ids")
    if array.dtype.kind == "f":
        if not np.isfinite(array).all() or not np.array_equal(array, np.round(array)):
            raise DataError(f"label volume {path} has non-integer values; save labels as integer ids")
        return array.astype(np.int32)
    return array if array.dtype.kind in "iu" else array.astype(np.uint8)


def read_volume_record(record: Record, max_voxels: int = DEFAULT_MAX_PIXELS) -> Volume:
    """A volume record's image: its channel files (``extra["channels"]``) or its one file."""
    return read_volume_image(record.extra.get("channels") or (record.image,), max_voxels)


def read_volume_annotation(record: Record, max_voxels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, np.ndarray | None]:
    """(raw semantic labels, instances or None) of a volume record, as ``read_annotation`` of images."""
    if not record.masks:
        raise DataError(f"volume {record.image} has no labels; give it some or predict on it instead of training")
    labels = read_volume_labels(record.masks[0], max_voxels)
    if record.mask_kind == "instances":
        instances = labels.astype(np.int32)
        return (instances > 0).astype(np.uint8), instances
    return labels, None


def write_volume(path: str | Path, array: np.ndarray, like: Volume) -> Path:
    """Write labels or probabilities (z, y, x) in ``path``'s format with the geometry of ``like``
    (the input volume): a NIfTI keeps its affine and header, a TIFF its spacing. Atomic."""
    path = Path(path)
    array = np.ascontiguousarray(array)
    if is_nifti(path):
        _write_nifti(path, array, like)
    else:
        _write_tiff(path, array, like.spacing)
    return path


# --- NIfTI -------------------------------------------------------------------------------------


def _read_nifti(path: Path, max_voxels: int) -> Volume:
    import nibabel

    image = nibabel.load(str(path))
    _check_voxels(path, image.shape[:3], max_voxels)
    if len(image.shape) not in (3, 4):
        raise DataError(f"cannot read volume {path}: {len(image.shape)}-D NIfTI; expected x, y, z (and channels)")
    data = np.asanyarray(image.dataobj)
    array = data.transpose(2, 1, 0) if data.ndim == 3 else data.transpose(2, 1, 0, 3)  # x-y-z -> z-y-x
    spacing = tuple(float(f"{size:.6g}") for size in image.header.get_zooms()[:3][::-1])  # float32 in the header
    return Volume(array, spacing, {"affine": image.affine, "header": image.header})


def _write_nifti(path: Path, array: np.ndarray, like: Volume) -> None:
    import nibabel

    if "affine" in like.geometry:
        header = like.geometry["header"].copy()
        affine = like.geometry["affine"]
    else:  # an input without NIfTI geometry: its spacing on the diagonal
        header, affine = None, np.diag([*like.spacing[::-1], 1.0])
    out = nibabel.Nifti1Image(array.transpose(2, 1, 0), affine, header)
    out.set_data_dtype(array.dtype)
    out.header.set_slope_inter(1.0, 0.0)  # labels as they are, not rescaled by the input's slope
    data = out.to_bytes()
    atomic_write_bytes(path, gzip.compress(data, compresslevel=1) if str(path).lower().endswith(".gz") else data)


# --- TIFF --------------------------------------------------------------------------------------


def _read_tiff(path: Path, max_voxels: int) -> Volume:
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        axes = series.axes.upper()
        _check_voxels(path, series.shape, max_voxels)
        array = series.asarray()
        spacing = _tiff_spacing(tif)
    if "C" in axes and "S" not in axes:  # ImageJ hyperstacks keep channels between z and y
        array = np.moveaxis(array, axes.index("C"), -1)
    elif "S" in axes:
        array = np.moveaxis(array, axes.index("S"), -1)
    if array.ndim == 2:
        raise DataError(f"{path} holds one plane, not a volume; use it as a 2D image")
    return Volume(array, spacing)


def _tiff_spacing(tif: tifffile.TiffFile) -> tuple[float, float, float]:
    """(z, y, x) spacing: OME PhysicalSize*, else ImageJ's ``spacing`` and the resolution tags."""
    if tif.ome_metadata:
        sizes = {axis: float(value) for axis, value in _OME_SIZE.findall(tif.ome_metadata)}
        if sizes:
            return (sizes.get("Z", 1.0), sizes.get("Y", 1.0), sizes.get("X", 1.0))
    page = tif.pages[0]
    z = float((tif.imagej_metadata or {}).get("spacing", 1.0))
    return (z, _pixel_size(page, "YResolution"), _pixel_size(page, "XResolution"))


def _pixel_size(page: Any, tag_name: str) -> float:
    tag = page.tags.get(tag_name)
    if tag is None:
        return 1.0
    numerator, denominator = tag.value
    return denominator / numerator if numerator else 1.0


def _write_tiff(path: Path, array: np.ndarray, spacing: tuple[float, float, float]) -> None:
    if array.dtype not in IMAGE_DTYPES:  # ImageJ stores 8, 16 and 32-bit float planes
        array = array.astype(np.uint16 if array.dtype.kind in "iu" and array.max(initial=0) <= 65535 else np.float32)
    z, y, x = spacing
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, array, imagej=True, resolution=(1.0 / x, 1.0 / y),
                         metadata={"spacing": z, "axes": "ZYX"}, compression="zlib")  # fmt: skip


# --- shared ------------------------------------------------------------------------------------


def _check_voxels(path: Path, shape: Sequence[int], max_voxels: int) -> None:
    voxels = int(np.prod(shape[:3], dtype=np.int64))
    if voxels > max_voxels:
        raise DataError(
            f"volume {path} has {voxels} voxels, more than the limit of {max_voxels}; "
            "raise it with --max-pixels if the file is trusted"
        )


def _dhw(array: np.ndarray) -> str:
    return "x".join(str(side) for side in array.shape[:3])


def nifti_shape(path: Path) -> tuple[int, int, int, str]:
    """(depth, height, width, dtype) of a NIfTI volume, from its header alone."""
    import nibabel

    with decoding(path, "volume"):
        image = nibabel.load(str(path))
        x, y, z = image.shape[:3]
        return int(z), int(y), int(x), str(image.get_data_dtype())


def volume_depth(path: Path) -> int:
    """The number of slices of a volume file, from its header."""
    if is_nifti(path):
        return nifti_shape(path)[0]
    with decoding(path, "volume"), tifffile.TiffFile(path) as tif:
        return len(tif.pages)


def slice_records(records: Sequence[Record]) -> list[Record]:
    """One record per slice (``page`` = z) of each volume record, for a 2D U-Net on volumes; the
    slices of a volume share its group, so a split never divides a volume. The first channel file."""
    return [
        Record(record.image, record.masks, group=record.group, mask_kind=record.mask_kind, page=z)
        for record in records if is_volume_record(record) for z in range(volume_depth(record.image))
    ]  # fmt: skip


def read_nifti_slice(path: Path, page: int | None, max_voxels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Slice ``page`` (z) of a NIfTI volume as a 2D array (y, x[, c])."""
    volume = read_volume(path, max_voxels)
    index = page or 0
    if not 0 <= index < volume.shape[0]:
        raise DataError(f"volume {path} has {volume.shape[0]} slices, no slice {index}")
    return volume.array[index]
