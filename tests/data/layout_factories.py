"""Tiny datasets written in each published layout, for tests (import as a module or use the
fixtures in conftest.py). Images are small random textures; masks hold rectangles whose place
depends on the sample index, so every sample differs and every mask has objects."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import tifffile
from PIL import Image



def save_array(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` to ``path`` in the format its suffix names (TIFF through tifffile)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".tif", ".tiff"):
        tifffile.imwrite(path, array)
    else:
        Image.fromarray(array).save(path)
    return path


def random_image(index: int, size: int | tuple[int, int], channels: int = 1, dtype=np.uint8) -> np.ndarray:
    """A reproducible random image (H, W) or (H, W, C)."""
    height, width = _shape(size)
    top = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0
    values = np.random.default_rng(index).uniform(0, top, (height, width, channels))
    return values.astype(dtype).squeeze(-1) if channels == 1 else values.astype(dtype)


def instances_for(index: int, size: int | tuple[int, int], objects: int = 2) -> np.ndarray:
    """An int32 label image with ``objects`` separate rectangles (ids 1..objects) placed by ``index``."""
    height, width = _shape(size)
    instances = np.zeros((height, width), dtype=np.int32)
    box_h, box_w = max(height // 4, 2), max(width // (2 * objects + 1), 2)
    top = (index * 3) % max(height - box_h, 1)
    for object_id in range(1, objects + 1):
        left = (2 * object_id - 1) * box_w
        instances[top : top + box_h, left : left + box_w] = object_id
    return instances


def mask_for(index: int, size: int | tuple[int, int], foreground: int = 255) -> np.ndarray:
    """A uint8 binary mask (0 / ``foreground``) with the rectangles of :func:`instances_for`."""
    return np.where(instances_for(index, size) > 0, foreground, 0).astype(np.uint8)


def make_folder_dataset(
    root: Path,
    n: int = 4,
    size: int = 32,
    ext: str = "png",
    mask_ext: str | None = None,
    mask_suffix: str = "",
    channels: int = 1,
    split: bool = False,
    instances: bool = False,
    mask_values: Sequence[int] | None = None,
) -> Path:
    """``root/images/*`` + ``root/masks/*`` (or ``root/train`` + ``root/val`` with ``split``).

    ``mask_values``: labels images use these raw values (one band per value) instead of 0/255.
    ``instances``: also write ``instances/*.png`` (16-bit labels) as the demo data does.
    """
    folders = [(root / "train", range(n)), (root / "val", range(n, n + max(n // 2, 1)))] if split else [(root, range(n))]
    for folder, indices in folders:
        for index in indices:
            name = f"sample_{index:03d}"
            save_array(folder / "images" / f"{name}.{ext}", random_image(index, size, channels))
            mask = mask_for(index, size) if mask_values is None else banded_mask(size, mask_values)
            save_array(folder / "masks" / f"{name}{mask_suffix}.{mask_ext or ext}", mask)
            if instances:
                save_array(folder / "instances" / f"{name}.png", instances_for(index, size).astype(np.uint16))
    return root


def banded_mask(size: int, values: Sequence[int]) -> np.ndarray:
    """A mask of horizontal bands, one per raw value (so every value is present)."""
    bands = np.array_split(np.arange(size), len(values))
    mask = np.zeros((size, size), dtype=np.uint8 if max(values) < 256 else np.uint16)
    for band, value in zip(bands, values):
        mask[band] = value
    return mask


def make_carvana_dataset(root: Path, cars: Sequence[str] = ("0cdf5b5d0ce1", "f7ad86e13ed7"), views: int = 4,
                         size: tuple[int, int] = (16, 24)) -> Path:
    """``train/<car>_<view>.jpg`` + ``train_masks/<car>_<view>_mask.gif`` (palette 0/1)."""
    for car_index, car in enumerate(cars):
        for view in range(1, views + 1):
            index = car_index * views + view
            save_array(root / "train" / f"{car}_{view:02d}.jpg", random_image(index, size, 3))
            mask = Image.fromarray(mask_for(index, size, foreground=1))
            mask.putpalette([0, 0, 0, 255, 255, 255])  # a palette image: pixel values are indices 0/1
            (root / "train_masks").mkdir(parents=True, exist_ok=True)
            mask.save(root / "train_masks" / f"{car}_{view:02d}_mask.gif")
    return root


def make_dsb_dataset(root: Path, n: int = 3, size: int = 32, stage: bool = True, empty: int = 0) -> Path:
    """``[stage1_train/]<id>/images/<id>.png`` (RGBA) + ``<id>/masks/*.png``, one 0/255 file per object.

    The last ``empty`` samples get an empty ``masks/`` folder.
    """
    base = root / "stage1_train" if stage else root
    for index in range(n):
        sample = base / f"{index:08x}abc"
        save_array(sample / "images" / f"{sample.name}.png", random_image(index, size, 4))
        (sample / "masks").mkdir(parents=True, exist_ok=True)
        if index >= n - empty:
            continue
        instances = instances_for(index, size)
        for object_id in range(1, instances.max() + 1):
            save_array(sample / "masks" / f"obj{object_id:02d}.png", np.where(instances == object_id, 255, 0).astype(np.uint8))
    return root


PETS_BREEDS = ("Abyssinian", "beagle")


def make_pets_dataset(root: Path, n: int = 4, size: int = 32, lists: bool = True) -> Path:
    """``images/<Breed>_<k>.jpg`` + ``annotations/trimaps/<Breed>_<k>.png`` (1 pet, 2 background, 3 border).

    ``lists``: ``annotations/trainval.txt`` gets the first half, ``test.txt`` the rest. A macOS
    ``._`` file is left beside the images, as in the published archive.
    """
    names = [f"{PETS_BREEDS[index % 2]}_{index + 1}" for index in range(n)]
    for index, name in enumerate(names):
        save_array(root / "images" / f"{name}.jpg", random_image(index, size, 3))
        trimap = np.full((size, size), 2, dtype=np.uint8)
        pet = instances_for(index, size) > 0
        trimap[pet] = 1
        trimap[pet & ~np.roll(pet, 1, axis=1)] = 3  # a border column on each pet's left edge
        save_array(root / "annotations" / "trimaps" / f"{name}.png", trimap)
    (root / "images" / "._Abyssinian_1.jpg").write_bytes(b"\x00\x05\x16\x07 not an image")
    if lists:
        half = n // 2
        listing = "# Image CLASS-ID SPECIES BREED ID\n"
        (root / "annotations" / "trainval.txt").write_text(listing + "".join(f"{name} 1 1 1\n" for name in names[:half]))
        (root / "annotations" / "test.txt").write_text("".join(f"{name} 1 1 1\n" for name in names[half:]))
    return root


def make_isbi_dataset(root: Path, n: int = 3, size: int = 32, volume: bool = False) -> Path:
    """``train/image/N.png`` + ``train/label/N.png`` (255 cell, 0 membrane) and ``test/N.png``,
    or with ``volume`` the ``train-volume.tif`` + ``train-labels.tif`` stacks of ``n`` pages."""
    images = [random_image(index, size) for index in range(n)]
    labels = [255 - mask_for(index, size) for index in range(n)]  # membranes (the rectangles) are 0
    if volume:
        root.mkdir(parents=True, exist_ok=True)
        # minisblack: a stack of grey pages, even when it has 3 or 4 of them (not one RGB page)
        tifffile.imwrite(root / "train-volume.tif", np.stack(images), photometric="minisblack")
        tifffile.imwrite(root / "train-labels.tif", np.stack(labels), photometric="minisblack")
        return root
    for index, (image, label) in enumerate(zip(images, labels)):
        save_array(root / "train" / "image" / f"{index}.png", image)
        save_array(root / "train" / "label" / f"{index}.png", label)
        save_array(root / "test" / f"{index}.png", image)
    return root


def make_ctc_dataset(root: Path, sequences: Sequence[str] = ("01", "02"), frames: int = 4,
                     gold: Sequence[int] = (0, 2), silver: Sequence[int] = (0, 1, 2, 3), size: int = 32) -> Path:
    """``NN/tNNN.tif`` (16-bit) + gold ``NN_GT/SEG/man_segNNN.tif`` for frames ``gold`` and silver
    ``NN_ST/SEG/`` for frames ``silver``; a 3D-slice file ``man_segNNN_ZZZ.tif`` that must be ignored."""
    for sequence in sequences:
        for frame in range(frames):
            save_array(root / sequence / f"t{frame:03d}.tif", random_image(frame, size, dtype=np.uint16))
        for truth, frame_numbers in (("GT", gold), ("ST", silver)):
            for frame in frame_numbers:
                save_array(root / f"{sequence}_{truth}" / "SEG" / f"man_seg{frame:03d}.tif", instances_for(frame, size).astype(np.uint16))
        save_array(root / f"{sequence}_GT" / "SEG" / "man_seg000_005.tif", instances_for(0, size).astype(np.uint16))
    return root


def _shape(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else size
