"""The configuration tree's dataclasses (model, data, train, predict) and the allowed values of its
fields. The comment beside a field is its help text (``unetkit train --help``)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from unetkit.config.parsing import build
from unetkit.errors import ConfigError

Norm = Literal["batch", "instance", "group", "none"]
Padding = Literal["same", "valid"]
Upsample = Literal["transpose", "bilinear"]
LossName = Literal["bce", "ce", "dice", "bce+dice", "ce+dice", "weighted-bce", "weighted-ce"]
MaskValues = Literal["auto", "classes", "instances"]
Precision = Literal["auto", "32", "bf16", "fp16"]
MemoryLayout = Literal["auto", "channels-last", "contiguous"]
Engine = Literal["torch", "onnxruntime"]  # inference: PyTorch, or the exported ONNX model
OutputFormat = Literal["png", "prob", "rle"]  # predict's outputs: masks, probabilities, Kaggle RLE
ProbFormat = Literal["png", "npy"]  # probabilities: 16-bit PNG or float16 .npy
RleOrder = Literal["row", "column"]  # run-length order: Carvana row, DSB-2018 column
ExportFormat = Literal["onnx", "torchscript", "safetensors"]
PetsMode = Literal["trimap", "binary", "binary-ignore"]
InstanceTarget = Literal["none", "border", "distance", "border+distance", "core", "core+border"]
InstanceSeeds = Literal["auto", "maps", "distance", "h-maxima", "probability"]
# Output channels each instance target adds after the class logits (one map each).
INSTANCE_MAPS = {
    "none": (), "border": ("border",), "distance": ("distance",), "border+distance": ("border", "distance"),
    "core": ("core",), "core+border": ("core", "border"),
}
CtcTruth = Literal["gold", "silver", "both"]
DEFAULT_MAX_PIXELS = 200_000_000  # decompression-bomb guard



def dice_loss_for(classes: int) -> LossName:
    """Dice + cross-entropy in the form a model's output takes (nnU-Net's loss): binary
    cross-entropy for one sigmoid channel or two classes, softmax cross-entropy above two."""
    return "bce+dice" if classes <= 2 else "ce+dice"


@dataclass
class UNetConfig:
    """The network. ``classes == 1``: one logit channel (sigmoid); ``classes >= 2``: softmax."""

    in_channels: int = 3  # input channels (grey 1, colour 3)
    classes: int = 1  # 1 = binary (sigmoid); K >= 2 = softmax
    depth: int = 4  # number of down-sampling steps; the bottleneck is stage ``depth``
    base_width: int = 64  # channels of the first stage, doubled at every stage
    norm: Norm = "batch"  # normalisation after each convolution
    groups: int = 8  # for norm == "group"
    padding: Padding = "same"  # same: any image size; valid: the paper's unpadded convolutions (572 -> 388)
    upsample: Upsample = "transpose"  # 2x2 transposed convolution, or bilinear + 1x1 convolution
    dropout: float = 0.0  # at the end of the contracting path, as in the paper
    init: Literal["default", "he"] = "default"  # weight initialisation: PyTorch's, or He (the paper's)
    checkpoint_activations: bool = False  # recompute stage activations in backward to save memory
    dims: int = 2  # 2: a 2D U-Net (images, or volumes slice by slice); 3: a 3D U-Net (volumes); for volume data the plan chooses
    pool: list[list[int]] = field(default_factory=list)  # per down-sampling step, its stride on each axis (empty: 2 on every axis); volumes with coarse slices pool in-plane first
    kernels: list[list[int]] = field(default_factory=list)  # per stage (first to bottleneck), its convolution kernel on each axis (empty: 3 on every axis)
    instance_target: InstanceTarget = "none"  # maps of the objects learned beside the classes (from instance labels): each object's border, its distance to the border, or both; --instances cuts objects along them

    @property
    def widths(self) -> tuple[int, ...]:
        """Channels of each stage, the first to the bottleneck."""
        return tuple(self.base_width * 2**stage for stage in range(self.depth + 1))

    @property
    def pool_strides(self) -> tuple[tuple[int, ...], ...]:
        """Each down-sampling step's stride per axis (``pool``, or 2 on every axis)."""
        return tuple(map(tuple, self.pool)) if self.pool else ((2,) * self.dims,) * self.depth

    @property
    def kernel_sizes(self) -> tuple[tuple[int, ...], ...]:
        """Each stage's convolution kernel per axis (``kernels``, or 3 on every axis)."""
        return tuple(map(tuple, self.kernels)) if self.kernels else ((3,) * self.dims,) * (self.depth + 1)

    @property
    def size_multiple(self) -> tuple[int, ...]:
        """Per axis, what a side must be a multiple of to pass every pooling: the strides' product."""
        return tuple(math.prod(stage[axis] for stage in self.pool_strides) for axis in range(self.dims))

    @property
    def instance_maps(self) -> tuple[str, ...]:
        """The maps the output channels after the class logits predict, in order."""
        return INSTANCE_MAPS[self.instance_target]

    @property
    def out_channels(self) -> int:
        """Output channels: the class logits, then one per instance map."""
        return self.classes + len(self.instance_maps)


@dataclass
class LabelConfig:
    """How raw mask pixel values become class ids.

    ``threshold`` mode (binary): class 1 where ``raw >= threshold`` (``raw < threshold`` with
    ``invert``, e.g. ISBI membranes, stored as 0). ``values`` mode: ``values[raw] = class id``.
    Raw values listed in ``ignore_values`` become ``ignore_index`` and count in no loss or metric.
    """

    mode: Literal["threshold", "values"] = "threshold"
    threshold: int = 1
    invert: bool = False
    values: dict[int, int] = field(default_factory=dict)
    ignore_values: list[int] = field(default_factory=list)
    ignore_index: int = 255
    names: list[str] = field(default_factory=lambda: ["background", "foreground"])


@dataclass
class NormalizeConfig:
    """Intensity rule applied to every image, in training and prediction alike.

    ``scale``: divide by the image dtype's maximum (255 for 8-bit, 65535 for 16-bit), so one model
    serves 8- and 16-bit images alike. ``meanstd``: then subtract ``mean`` and divide by ``std``
    per channel. ``percentile``: map the image's own ``low``/``high`` percentiles to 0/1 (robust
    for microscopy with varying exposure). ``zscore``: subtract the image's own mean and divide by
    its own std per channel (nnU-Net's rule; low-contrast images reach unit variance). ``ct``:
    clip raw intensities to ``clip``, then subtract ``mean`` and divide by ``std`` (nnU-Net's CT rule:
    the window and statistics of the foreground voxels of the whole dataset).
    """

    mode: Literal["scale", "meanstd", "percentile", "zscore", "ct"] = "scale"  # by bit depth, dataset mean/std, image percentiles or mean/std; ct: clip to the dataset's foreground percentiles, then its foreground mean/std (nnU-Net)
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    low: float = 1.0  # percentile mode: the percentile mapped to 0
    high: float = 99.0  # percentile mode: the percentile mapped to 1
    clip: list[float] = field(default_factory=list)  # ct mode: the intensity window [low, high], raw units (Hounsfield)


@dataclass
class DataConfig:
    """Where the data is and how images and masks are prepared; the preprocessing part travels
    with the checkpoint."""

    path: str = ""
    layout: str = "auto"  # dataset layout (auto: detect it from the files)
    val_path: str = ""  # a separate validation folder (instead of a split)
    val_fraction: float = 0.2  # share of groups (e.g. all views of one car) held out for validation
    folds: int = 0  # K-fold cross-validation over groups (0: none)
    fold: int = 0  # which fold validates (0..K-1)
    strict: bool = False  # an image without a mask (or a mask without an image) is an error
    pets_mode: PetsMode = "trimap"  # Oxford pets: 3 classes, binary, or binary, border ignored
    ctc_truth: CtcTruth = "gold"  # Cell Tracking Challenge annotations to train on
    masks: MaskValues = "auto"  # classes: a class per value; instances: every value one object (label images); auto: instances when over 20 values or any above 255
    image_size: int = 0  # resize to this square size (0: keep)
    patch_size: int = 0  # train on random patches of this size (0: whole images)
    patch_shape: list[int] = field(default_factory=list)  # volumes: the training patch per axis (depth, height, width)
    augment: Literal["none", "light", "paper", "strong"] = "light"  # flips/turns; + elastic (paper); + intensity, noise, blur
    color_augment: Literal["none", "mild", "strong"] = "none"  # colour jitter: mild (stains, lighting) or strong (photographs: any hue)
    foreground_oversample: float = 0.0  # share of training patches made to contain a foreground pixel
    cache: Literal["none", "ram"] = "none"  # keep decoded images in memory
    weight_map: bool = False  # compute the paper's border weight map from instance labels
    weight_w0: float = 10.0  # border weight map: weight at the gap between objects
    weight_sigma: float = 5.0  # border weight map: fall-off width in pixels
    max_pixels: int = DEFAULT_MAX_PIXELS  # refuse larger images (decompression bombs)
    labels: LabelConfig = field(default_factory=LabelConfig)
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)


@dataclass
class TrainConfig:
    time: float = 0.0  # wall-clock budget in seconds (0: none); the schedule is fitted to it
    steps: int = 0  # optimizer steps (0: from the epochs, or from the budget)
    epochs: int = 20  # a view of steps: epochs x steps per epoch, used when neither steps nor time is set
    val_every: int = 0  # steps between validations (0: every epoch; with a budget, <= 15 % of it)
    warmup: float = 0.0  # linear warm-up, as a fraction of the steps
    batch_size: int = 4  # images (or patches) per optimizer step, over all processes
    lr: float = 1e-3  # peak learning rate
    optimizer: Literal["adamw", "sgd"] = "adamw"  # AdamW, or SGD with momentum (the paper's)
    momentum: float = 0.99  # SGD momentum
    weight_decay: float = 1e-4  # decoupled weight decay
    scheduler: Literal["cosine", "none"] = "cosine"  # learning-rate schedule after the warm-up
    loss: LossName = "bce+dice"  # training loss; weighted-*: the paper's border weight map
    precision: Precision = "auto"  # auto: on CPUs bfloat16 where the run's own step timed faster in it, on GPUs bfloat16 or float16; 32: float32 everywhere
    precision_chosen: str = ""  # what the run used and why (the trainer fills it in: auto measures)
    compile: bool = False  # torch.compile the model (falls back to eager if the compiler fails)
    memory_layout: MemoryLayout = "auto"  # tensors in memory; auto: on CPUs the layout the run's own training step timed faster in (cached), on GPUs channels-last, volumes contiguous
    layout_chosen: str = ""  # what the run used and why (the trainer fills it in: auto measures)
    seed: int = 0  # seed of the split, the initial weights and every step's randomness
    deterministic: bool = False  # deterministic algorithms only (slower)
    workers: int = 2  # data loader processes
    log_every: int = 10  # steps between reading the loss (each read waits for the device)
    grad_clip: float = 0.0  # clip the gradient norm to this (0: no clipping)
    max_bad_steps: int = 20  # stop after this many non-finite steps in a row
    sync_batchnorm: bool = False  # batch-norm statistics over all processes (multi-GPU)
    tensorboard: bool = False  # also write TensorBoard events
    samples: int = 4  # validation images drawn into samples/ at each validation


@dataclass
class PredictConfig:
    tile_size: int = 512  # inference tile side (network input)
    window: list[int] = field(default_factory=list)  # volumes: the sliding window per axis (depth, height, width); empty: the training patch
    overlap: float = 0.25  # tile overlap, a fraction of the tile
    blend: Literal["gaussian", "linear", "constant"] = "gaussian"  # how overlapping tiles are weighted
    batch_size: int = 4  # tiles per forward pass
    memory_layout: MemoryLayout = "auto"  # tensors in memory when predicting; auto: on CPUs the layout the forward pass on the tiles timed faster in (cached, apart from training's), on GPUs channels-last
    tta: bool = False  # average the 8 flips and rotations
    threshold: float = 0.5  # binary models: foreground probability of a mask pixel
    # Post-processing: chosen on the validation images after training (inference/tuning.py).
    min_object_size: int = 0  # objects of a class smaller than this (pixels, 8-connected) become background
    keep_largest: bool = False  # keep only the largest object of each class
    instance_threshold: float = 0.5  # --instances: foreground probability of instance pixels
    instance_seeds: InstanceSeeds = "auto"  # watershed seeds (postprocess.py); auto: the model's instance maps where it has them, else distance
    instance_min_distance: int = 5  # distance seeds: pixels between maxima of the distance map
    instance_h: float = 2.0  # h-maxima seeds: how far (pixels) a distance maximum must rise above its surroundings
    instance_seed_threshold: float = 0.9  # probability seeds: object cores are pixels above this probability
    instance_map_h: float = 0.2  # maps seeds: how far a maximum of the predicted object-centre map must rise above its surroundings
    instance_min_size: int = 16  # instances smaller than this (pixels) are dropped


@dataclass
class Config:
    model: UNetConfig = field(default_factory=UNetConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        return build(cls, data, "config")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> Config:
        return cls.from_dict(yaml.safe_load(text) or {})

    @classmethod
    def load(cls, path: str | Path) -> Config:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
        return cls.from_yaml(text)
