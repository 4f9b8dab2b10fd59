"""The planning rules: a dataset fingerprint (+ the machine and the budget) -> plain config values,
each with its reason. Pure functions of their arguments, so tests pin them on made-up fingerprints.

The spirit is nnU-Net's (a U-Net configured by fixed rules from the data), adapted to 2D images
and to a wall-clock budget on whatever machine is at hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from unetkit.config import Padding, TrainConfig
from unetkit.model.sizes import nearest_valid_input_sizes, valid_output_size
from unetkit.planning.fingerprint import Fingerprint

LOW_CONTRAST = 0.1  # median image std (0..1 range) below which images are standardised per image
BRIGHTNESS_SPREAD = 0.25  # std of image means relative to their mean above which, too
FEW_LEVELS = 0.25  # 16-bit images whose 99.5th percentile lies below this share of the range
PATCH_MULTIPLE = 32  # patch sides are multiples of 2^MAX_DEPTH
DEVICE_NAMES = {"cpu": "CPU", "cuda": "GPU"}
MAX_PATCH = {"cpu": 256, "cuda": 512}  # on 2 busy CPU cores 4 x 256^2 px took 0.7 s a step at width 8
MIN_PATCH = 32
BOTTLENECK_SIDE = 8  # the deepest feature map keeps at least this many pixels a side (nnU-Net: 4-8)
MIN_DEPTH, MAX_DEPTH = 2, 5
VALID_OUTPUT_SHARE = 0.5  # `valid` padding: the output keeps at least this share of the input side
BATCH_PIXELS = {"cpu": 4 * 256**2, "cuda": 8 * 512**2}  # pixels per optimizer step
MIN_BATCH, MAX_BATCH = 2, 32
ACTIVATION_BYTES = 60  # per pixel and unit of base width, one sample, forward + backward (estimate)
OBJECT_FILL = 1.0  # after a downscale, an object's median diameter spans at most this share of a patch
MIN_WORTHWHILE_SCALE = 0.75  # smaller reductions are not worth the lost detail
MIN_WIDTH_PX = 4.0  # a downscale keeps structures of the median width at least this wide
RARE_FOREGROUND = 0.25
# Grey images stored as RGB (JPEG too) have no coloured pixels; a silver car in a studio has 1 %.
COLOURED_IMAGES = 0.002
BROAD_HUES = 45.0  # degrees of effective hue range from which colour images are photographs (stains <= 36, cars >= 51)
DARK_BACKGROUND = 0.5  # share of near-black pixels from which broad hues are fluorescence, not a photograph
OVERSAMPLE = 1 / 3  # nnU-Net's share of patches forced to contain foreground
CPU_WORKERS = TrainConfig().workers  # loader processes on a CPU: the default, which measured best there
MAX_WORKERS = 16


@dataclass(frozen=True)
class Choice:
    path: str  # a config path, e.g. "data.patch_size"
    value: Any
    reason: str


def normalization(fp: Fingerprint) -> Choice:
    """Per-image z-score where images have low contrast, varying brightness or 16-bit values
    using few levels; else the dataset's mean and std, which keep absolute brightness."""
    path = "data.normalize.mode"
    if fp.image_std < LOW_CONTRAST:
        return Choice(path, "zscore", (
            f"low contrast (median image std {fp.image_std:.3f} of the range < {LOW_CONTRAST}): each image "
            "standardised by its own mean and std reaches unit variance (nnU-Net's rule)"
        ))
    brightness = sum(fp.mean) / len(fp.mean)
    if fp.mean_spread > BRIGHTNESS_SPREAD * brightness:
        return Choice(path, "zscore", (
            f"brightness varies between images (std of image means {fp.mean_spread:.3f} against a mean of "
            f"{brightness:.3f}): each image standardised by its own mean and std"
        ))
    if fp.bit_depth == 16 and max(channel[-1] for channel in fp.percentiles) < FEW_LEVELS:
        return Choice(path, "zscore", (
            f"16-bit images use only the lowest {max(c[-1] for c in fp.percentiles):.0%} of their range: "
            "standardised per image instead of divided by 65535"
        ))
    return Choice(path, "meanstd", (
        f"contrast {fp.image_std:.3f} and brightness steady between images (std of means {fp.mean_spread:.3f}): "
        f"the dataset's mean and std (from {fp.sampled} sampled images) keep absolute brightness"
    ))


def model_norm() -> Choice:
    return Choice("model.norm", "instance", (
        "instance norm (nnU-Net): no running statistics, so evaluation behaves as training; batch norm's "
        "lagging running statistics gave Dice 0 in eval mode on low-contrast cells, and batches are small"
    ))


def image_size(fp: Fingerprint, patch: int) -> Choice:
    """A downscale (square resize) where objects are too large for a ``patch`` px patch and stay
    wide enough."""
    path = "data.image_size"
    objects = fp.objects
    if objects.source == "none" or fp.median_side <= patch or objects.median_diameter <= OBJECT_FILL * patch:
        return Choice(path, 0, (
            f"full resolution: objects (median diameter {objects.median_diameter:.0f} px) fit a {patch} px patch"
        ))
    scale = OBJECT_FILL * patch / objects.median_diameter
    keep_width = MIN_WIDTH_PX / max(objects.median_thickness, 1e-6)
    if scale < keep_width or scale > MIN_WORTHWHILE_SCALE:
        return Choice(path, 0, (
            f"full resolution: a downscale to fit objects of {objects.median_diameter:.0f} px into a {patch} px "
            f"patch (x{scale:.2f}) would thin structures of median width {objects.median_thickness:.0f} px "
            f"below {MIN_WIDTH_PX:.0f} px or gain too little"
        ))
    side = max(patch, _multiple(math.sqrt(fp.median_pixels) * scale, PATCH_MULTIPLE))
    return Choice(path, side, (
        f"objects are large (median diameter {objects.median_diameter:.0f} px, width {objects.median_thickness:.0f} px) "
        f"in {fp.median_size[1]}x{fp.median_size[0]} images: resized to {side}x{side} (about x{scale:.2f}) so an "
        f"object fits a {patch} px patch; predictions are resized back"
    ))


def patch_size(fp: Fingerprint, resized: int, device_type: str) -> Choice:
    """As large as the median image allows, a multiple of 32, capped per device."""
    cap = MAX_PATCH[device_type]
    side = resized or fp.median_side
    patch = max(MIN_PATCH, min(cap, _multiple(side, PATCH_MULTIPLE)))
    return Choice("data.patch_size", patch, (
        f"the largest multiple of {PATCH_MULTIPLE} within the median image side ({side} px), at most {cap} on "
        f"a {DEVICE_NAMES[device_type]} (larger patches would cost optimizer steps)"
    ))


def depth(patch: int, padding: Padding = "same") -> Choice:
    """As deep as keeps BOTTLENECK_SIDE px at the bottleneck, with the patch a multiple of 2^depth.
    With `valid` padding each level also trims the output, so the network is made shallower until
    its output keeps VALID_OUTPUT_SHARE of the input side (the paper's 388 of 572 px)."""
    value = max(MIN_DEPTH, min(MAX_DEPTH, int(math.log2(max(patch, 1) / BOTTLENECK_SIDE))))
    if padding == "valid":
        while value > MIN_DEPTH and _valid_output_share(patch, value) < VALID_OUTPUT_SHARE:
            value -= 1
        tile = nearest_valid_input_sizes(patch, value)[0]
        kept = f"{valid_output_size(tile, value)} px of output from a {tile} px input"
        if _valid_output_share(patch, value) >= VALID_OUTPUT_SHARE:
            return Choice("model.depth", value, (
                f"`valid` padding trims every level: the deepest network (at most {MAX_DEPTH}) whose output keeps "
                f"{VALID_OUTPUT_SHARE:.0%} of the input side, {kept}"
            ))
        return Choice("model.depth", value, (
            f"`valid` padding trims every level: even depth {MIN_DEPTH} keeps only {kept} (a larger patch keeps more)"
        ))
    while value > MIN_DEPTH and patch % 2**value:
        value -= 1
    return Choice("model.depth", value, (
        f"the bottleneck sees {patch / 2**value:.0f} px of a {patch} px patch (>= {BOTTLENECK_SIDE} wanted), "
        f"at most {MAX_DEPTH} down-samplings (widths double at each)"
    ))


def valid_patch(patch: int, depth: int) -> Choice:
    """With `valid` padding only some input sizes pass the poolings: the largest within ``patch``
    (the smallest there is where none fits; smaller images are mirror-padded to it)."""
    side = nearest_valid_input_sizes(patch, depth)[0]
    which = f"the largest within {patch} px" if side <= patch else f"the smallest ({patch} px is too small)"
    return Choice("data.patch_size", side, (
        f"{which} of the input sides a depth-{depth} `valid` U-Net takes; {valid_output_size(side, depth)} px of output"
    ))


def _valid_output_share(patch: int, depth: int) -> float:
    """Output side over input side for the largest valid input within ``patch`` (0 if none fits)."""
    tile = nearest_valid_input_sizes(patch, depth)[0]
    return valid_output_size(tile, depth) / tile if tile <= patch else 0.0


def batch_size(patch: int, width: int, device_type: str, memory_bytes: int) -> Choice:
    """About BATCH_PIXELS pixels per step (nnU-Net sizes batches by memory; a CPU by time), at
    least MIN_BATCH, no more than half the memory holds."""
    wanted = BATCH_PIXELS[device_type] // patch**2
    per_sample = ACTIVATION_BYTES * width * patch**2
    fits = memory_bytes // 2 // per_sample
    value = max(MIN_BATCH, min(MAX_BATCH, wanted, fits))
    return Choice("train.batch_size", value, (
        f"{value} x {patch}^2 px per step: about {BATCH_PIXELS[device_type] // 1024}k px on a {DEVICE_NAMES[device_type]}, "
        f"at least {MIN_BATCH}; memory allows {fits} (estimated {per_sample / 2**20:.0f} MiB per sample at width {width})"
    ))


def color_augment(fp: Fingerprint) -> Choice:
    """Colour jitter from what the pixels show, never from the file format (the same photographs
    saved as PNG or JPEG are the same photographs).

    Grey images get none. Stained tissue (H&E, IHC) and fundus photographs take their colours from
    one or two dyes or pigments: their coloured pixels fill a narrow hue band (effective ranges of
    22-36 degrees on H&E, IHC, DSB-2018 and fundus images; see ``Fingerprint.hue_range``) whose
    shade carries meaning, so only the small shifts between stainings and cameras (mild).
    Photographs of objects that come in any colour spread their hues wider (51-97 degrees on
    Carvana cars and everyday photographs): an object's colour says little about what it is, so
    hue varies freely (strong). Fluorescence composites spread hues too, but as light emitted on
    black (most pixels near black, against at most a quarter in photographs and fundus images):
    each colour names a marker, so mild.
    """
    path = "data.color_augment"
    if fp.channels < 3 or fp.coloured < COLOURED_IMAGES:
        return Choice(path, "none", f"grey images ({fp.coloured:.1%} coloured pixels): nothing to vary")
    hues = f"the coloured pixels' hues span about {fp.hue_range:.0f} degrees"
    if fp.hue_range < BROAD_HUES:
        return Choice(path, "mild", (
            f"{hues} (< {BROAD_HUES:.0f}), the narrow band of stains or pigments (H&E, IHC, fundus): their shade "
            "varies a little between images, so hue +-14 degrees, saturation and brightness +-20 %"
        ))
    if fp.dark >= DARK_BACKGROUND:
        return Choice(path, "mild", (
            f"{hues}, but on black ({fp.dark:.0%} of the pixels): fluorescence, where each colour names a marker, "
            "so hue +-14 degrees, saturation and brightness +-20 %"
        ))
    return Choice(path, "strong", (
        f"{hues} (>= {BROAD_HUES:.0f}), as photographs of things that come in any colour do: an object's colour "
        "says little about what it is, so hue and saturation vary freely (a model trained on a blue car must find "
        "a silver one)"
    ))


def foreground_oversample(fp: Fingerprint, patch: int, resized: int) -> Choice:
    side = resized or fp.median_side
    covered = min(1.0, (patch / side) ** 2)
    if fp.foreground_share >= RARE_FOREGROUND or covered >= 0.5:
        return Choice("data.foreground_oversample", 0.0, (
            f"foreground is {fp.foreground_share:.0%} of the pixels and a patch covers {covered:.0%} of an image: "
            "random patches see enough of it"
        ))
    return Choice("data.foreground_oversample", round(OVERSAMPLE, 3), (
        f"foreground is {fp.foreground_share:.0%} of the pixels and a patch covers {covered:.0%} of an image: "
        "a third of the patches contain a foreground pixel (nnU-Net)"
    ))


def augment(passes: float) -> Choice:
    if passes < 5:
        return Choice("data.augment", "light", (
            f"each image is seen about {passes:.1f} times in the run: flips and rotations suffice"
        ))
    return Choice("data.augment", "paper", (
        f"each image is seen about {passes:.0f} times: the paper's shifts, scaling, rotations and elastic "
        "deformation keep the model from memorising it"
    ))


def cache(fp: Fingerprint, weight_maps: bool, processes: int, ram_bytes: int) -> Choice:
    """Decoded images (at their full size) in memory where every loader process's copy fits a
    quarter of the free RAM."""
    pixels = fp.median_pixels
    per_pixel = fp.channels * fp.bit_depth // 8 + 1 + (4 if weight_maps else 0)  # image, mask, weights
    total = fp.images * pixels * per_pixel
    fits = total * processes <= ram_bytes // 4
    return Choice("data.cache", "ram" if fits else "none", (
        f"the decoded dataset takes about {total / 2**20:.0f} MiB in each of {processes} loader processes, "
        + ("within a quarter of the free memory: kept (no decoding or weight maps after the first use)" if fits
           else f"over a quarter of the {ram_bytes / 2**30:.0f} GiB free: read from disk")
    ))


def workers(device_type: str, cpu_count: int) -> Choice:
    """Loader processes. A GPU outruns two: on an H200 machine the planned Carvana loader alone
    (8 x 512^2 px, strong augmentation) made 4.5 batches/s with 2 processes and 18 with 14, the
    model 11.8 steps/s; so a GPU gets every core but two. On a CPU the loader shares the cores with
    training, and 2 processes measured best (benchmarks/pipeline.py)."""
    if device_type != "cuda":
        return Choice("train.workers", CPU_WORKERS, f"the loader shares the CPU with training: {CPU_WORKERS} processes measured best")
    count = max(CPU_WORKERS, min(MAX_WORKERS, cpu_count - 2))
    return Choice("train.workers", count, (
        f"{count} of the {cpu_count} CPU cores feed the GPU (2 loader processes kept an H200 at 4.5 batches/s "
        "of 8 x 512^2 px, 14 reached 18)"
    ))


def tile_size(patch: int, depth: int, padding: Padding = "same") -> Choice:
    if padding == "valid":  # the patch is a valid input size
        return Choice("predict.tile_size", patch, (
            "the training patch size: a `valid` U-Net predicts with the paper's overlap-tile strategy"
        ))
    tile = math.ceil(patch / 2**depth) * 2**depth  # the predictor's tiles are multiples of 2^depth
    return Choice("predict.tile_size", tile, (
        "the training patch size: instance norm then sees tiles of the statistics it was trained on"
    ))


def passes(steps: int, batch: int, patch: int, fp: Fingerprint, resized: int) -> float:
    """How many times the run sees each training image's pixels (patches over images)."""
    pixels = fp.pixels_at(resized)
    return steps * batch * min(patch**2, pixels) / (fp.train_images * pixels)


def _multiple(value: float, multiple: int) -> int:
    return int(value // multiple * multiple)
