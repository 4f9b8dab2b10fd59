"""Known dataset layouts, read as they are published: each turns a folder into image/mask records.

A layout is a small class with ``missing(root)`` (what its files would be, ``None`` when they are
there) and ``collect(root, **options)`` (the records). A layout that offers choices names the
``DataConfig`` fields it takes in ``options`` (pets: ``pets_mode``); :func:`discover` picks the one
layout whose files are present, or the one named, passes it those fields of the data config and
applies the checks every layout shares. Nothing is ever written into the dataset folder.
"""

from __future__ import annotations

from pathlib import Path

from unetkit.config import DataConfig
from unetkit.data.layouts.base import Discovery, Layout
from unetkit.data.layouts.challenges import CtcLayout, Isbi2012Layout
from unetkit.data.layouts.folders import CarvanaLayout, Dsb2018Layout, FolderLayout, PetsLayout
from unetkit.data.layouts.volumes import DecathlonLayout, VolumeFolderLayout
from unetkit.errors import ConfigError, DataError

__all__ = ["LAYOUTS", "Discovery", "Layout", "discover"]

LISTED_UNMATCHED = 10

LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (FolderLayout(), CarvanaLayout(), Dsb2018Layout(), PetsLayout(), Isbi2012Layout(), CtcLayout(),
                   VolumeFolderLayout(), DecathlonLayout())  # fmt: skip
}


def discover(
    path: str | Path, layout: str = "auto", *, strict: bool = False, data: DataConfig | None = None
) -> Discovery:
    """Find the image/mask records of the dataset at ``path``, in ``layout`` or the one detected.

    Only names and headers are read; ``strict`` turns unmatched files from warnings into an error;
    ``data`` holds the options the layout takes (``Layout.options``; None: their defaults).
    """
    root = Path(path).expanduser()
    _check_root(root)
    chosen = _choose_layout(root, layout)
    data = data or DataConfig()
    discovery = chosen.collect(root, **{name: getattr(data, name) for name in chosen.options})
    _report_unmatched(discovery, strict)
    if not discovery.records:
        raise DataError(
            f"no image/mask pairs found in {root} ({chosen.name} layout: {chosen.expected}); check the file names"
        )
    return discovery


def _check_root(root: Path) -> None:
    if not root.exists():
        raise DataError(f"dataset folder {root} does not exist; check --data")
    if not root.is_dir():
        raise DataError(f"{root} is a file, not a dataset folder; pass the folder holding the data to --data")
    if not any(root.iterdir()):
        raise DataError(f"dataset folder {root} is empty; put a dataset there or point --data elsewhere")


def _choose_layout(root: Path, name: str) -> Layout:
    if name != "auto":
        if name not in LAYOUTS:
            raise ConfigError(f"unknown layout {name!r}; use auto or one of {', '.join(LAYOUTS)}")
        reason = LAYOUTS[name].missing(root)
        if reason is not None:
            raise DataError(f"{root} is not in the {name} layout: {reason}; arrange it so or pass another --layout")
        return LAYOUTS[name]
    reasons = {layout.name: layout.missing(root) for layout in LAYOUTS.values()}
    found = [name for name, reason in reasons.items() if reason is None]
    if len(found) == 1:
        return LAYOUTS[found[0]]
    if found:
        raise DataError(f"{root} matches several layouts ({', '.join(found)}); choose one with --layout")
    looked_for = "; ".join(f"{name}: {reason}" for name, reason in reasons.items())
    raise DataError(f"cannot recognise the layout of {root} ({looked_for}); arrange it as one of these or pass --layout")


def _report_unmatched(discovery: Discovery, strict: bool) -> None:
    for what, paths in (("images without a mask", discovery.unmatched_images), ("masks without an image", discovery.unmatched_masks)):
        if not paths:
            continue
        shown = ", ".join(str(path) for path in paths[:LISTED_UNMATCHED])
        more = f" and {len(paths) - LISTED_UNMATCHED} more" if len(paths) > LISTED_UNMATCHED else ""
        message = f"{len(paths)} {what} in {discovery.root}: {shown}{more}"
        if strict:
            raise DataError(f"{message}; fix the names or leave out --strict")
        discovery.warnings.append(message)
