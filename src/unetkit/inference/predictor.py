"""Predictor: a trained network -> probabilities for images (and, for 3D models, volumes) of any size.

Images larger than a tile are predicted tile by tile: ``same``-padding models with overlapping
tiles blended by a window, ``valid``-padding models with the paper's overlap-tile strategy (exact,
no blending). Volumes go the same way in 3D windows (``predict.window``), Gaussian-blended. Stitched probabilities accumulate in float32 on the CPU, so memory is the output
array plus one batch of tiles, whatever the image size. The network call is a small callable
(``Network``), so the PyTorch and onnxruntime engines share all tiling and test-time augmentation.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unetkit.checkpoint import load_weights
from unetkit.config import Config, Engine
from unetkit.data.reading import to_channels
from unetkit.data.transforms import intensity_rule, normalize
from unetkit.device import select_device
from unetkit.errors import CheckpointError, ConfigError, DataError
from unetkit.inference.networks import DIHEDRAL, Network, OnnxRuntimeNetwork, TorchNetwork, dihedral_average, mirror_average
from unetkit.inference.postprocess import labels_from_probabilities
from unetkit.inference.result import ImageLike, Result, predict
from unetkit.inference.settings import check_predict_settings, settled, valid_tile_output, window_shape
from unetkit.inference.tiling import (
    AxisTiles, overlap_tile_axis, overlap_tile_count, sliding_axis, sliding_count, whole_axis,
)  # fmt: skip
from unetkit.inference.windows import WindowInput, stitch
from unetkit.model.blocks import fold_batch_norms
from unetkit.model.unet import UNet

# Image channel counts that ``to_channels`` converts without guessing: grey <-> RGB, RGBA -> RGB/grey.
CONVERTIBLE_CHANNELS = {1: (3,), 3: (1,), 4: (1, 3)}


class Predictor:
    """Probabilities for whole images from a model (or any ``Network``) and its run's config."""

    def __init__(
        self,
        model: nn.Module | Network,
        config: Config,
        device: str | torch.device = "cpu",
        precision: str = "auto",
        layout: str | None = None,
    ) -> None:
        """``layout``: the memory layout (auto | channels-last | contiguous); None: the config's
        ``predict.memory_layout``. auto times the forward pass on the tiles, apart from training."""
        self.config = config
        self.device = select_device(str(device))
        check_predict_settings(config)  # before the precision and layout probes run the network on tiles
        if isinstance(model, nn.Module):
            tiles = (config.predict.batch_size, config.model.in_channels, *self.window_shape)
            self.network: Network = TorchNetwork(
                model, self.device, precision, layout or config.predict.memory_layout, tiles, config.model.classes
            )
        else:
            self.network = model

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str = "auto",
        precision: str = "auto",
        engine: Engine = "torch",
        onnx_path: str | Path | None = None,
        postprocess: bool = True,
        settings: Mapping[str, Any] | None = None,
    ) -> Predictor:
        """A predictor for a checkpoint (``.pt``) or a weights export (``.safetensors``).

        ``engine="onnxruntime"`` runs ``onnx_path`` (default: the checkpoint's name with ``.onnx``)
        in float32 and takes only the config from the checkpoint. ``postprocess=False`` drops the
        post-processing chosen on validation; ``settings`` (config path -> value, e.g.
        ``{"predict.tile_size": 256}``) then replace the checkpoint's, checked with the rest.
        """
        path = Path(path)
        config, state = load_weights(path)
        config = settled(config, postprocess, settings)
        if engine == "onnxruntime":
            network = OnnxRuntimeNetwork(onnx_path or path.with_suffix(".onnx"), select_device(device), config.model.classes)
            return cls(network, config, device=device)
        if engine != "torch":
            raise ConfigError(f"--engine {engine}: choose torch or onnxruntime")
        try:
            model = UNet(config.model)
            model.load_state_dict(state)
        except ConfigError as exc:
            raise CheckpointError(f"{path}: its config describes no model that can be built ({exc})") from None
        except RuntimeError as exc:
            first_line = str(exc).splitlines()[0]
            raise CheckpointError(f"{path}: weights do not fit the model its config describes ({first_line})") from None
        return cls(fold_batch_norms(model), config, device=device, precision=precision)

    # --- prediction ----------------------------------------------------------------------------

    def __call__(self, image: ImageLike) -> Result:
        """The mask, class probabilities and (on first use) objects of an image array or file."""
        return predict(self, image)

    def predict_image(self, image: np.ndarray) -> np.ndarray:
        """Probabilities (K + maps, H, W) float32 for a raw image (H, W[, C]) as ``read_image``
        returns it: the K classes' (one channel for binary models), then the instance maps' if the
        model has any (``config.model.instance_maps``). A 3D model takes a volume (D, H, W[, C])
        and gives (K, D, H, W).

        Applies the checkpoint's preprocessing: channel conversion, normalisation and, for models
        trained on resized images (``data.image_size``), the resize there and back. Tiles are
        normalised one by one, so beyond the raw image only the outputs grow with its size.
        """
        dims = self.config.model.dims
        if image.ndim == dims:
            image = image[..., None]
        if image.ndim != dims + 1 or 0 in image.shape[:dims]:
            expected = "an image (H, W, C)" if dims == 2 else "a volume (D, H, W[, C]) for this 3D model"
            raise DataError(f"expected {expected} with pixels, got an array of shape {image.shape}")
        if dims == 2:
            self.check_image_size(image.shape[0], image.shape[1])
        image = self._model_channels(image)
        size = self.config.data.image_size
        if size:
            # Bilinear without antialiasing: the same pixels as training's albumentations Resize (cv2).
            x = torch.from_numpy(normalize(image, self.config.data.normalize)).permute(2, 0, 1)
            resized = F.interpolate(x[None], size=(size, size), mode="bilinear")[0]
            probabilities = self.predict_tensor(resized)
            return F.interpolate(probabilities[None], size=image.shape[:2], mode="bilinear")[0].numpy()
        rule = intensity_rule(image, self.config.data.normalize)

        def normalized_window(indices: tuple[torch.Tensor, ...]) -> torch.Tensor:
            return torch.from_numpy(rule(image[np.ix_(*(index.numpy() for index in indices))])).movedim(-1, 0)

        return self._stitch(image.shape[:dims], normalized_window).numpy()

    def predict_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities (K, H, W) float32 on the CPU for a normalised image (C, H, W) (3D models:
        (K, D, H, W) for a normalised volume (C, D, H, W))."""
        self._check_tensor(x)
        x = x.float().cpu()
        return self._stitch(x.shape[1:], lambda indices: x[(slice(None), *_broadcast(indices))])

    def _stitch(self, sizes: Sequence[int], window_input: WindowInput) -> torch.Tensor:
        """Run the network over the window grid of an image (volume) of ``sizes`` and blend the
        outputs; ``window_input(indices per axis)`` gives one normalised input window (C, ...)."""
        axes = self._tile_axes(sizes)
        return stitch(axes, self.config.model.out_channels, window_input, self._run_network, self.config.predict.batch_size)

    @property
    def window_shape(self) -> tuple[int, ...]:
        """The network input of one tile (images) or window (volumes)."""
        return window_shape(self.config)

    def labels(self, probabilities: np.ndarray | torch.Tensor) -> np.ndarray:
        """Class ids uint8 (H, W) from ``predict_image``'s probabilities with the post-processing
        of ``config.predict`` (threshold for binary, small-object removal)."""
        return labels_from_probabilities(probabilities, self.config)

    # --- what an image costs, from its size alone (a server prices a request before decoding it) ---

    @property
    def min_image_side(self) -> int:
        """The smallest image side this 2D model predicts. A ``same``-padding network run on the image
        itself needs 2 x 2 values in its deepest layer: a side of 2**depth px or less leaves it one,
        which instance and group norm cannot normalise (and batch norm, folded, reads as noise); so
        2**depth + 1 px. Resized (``data.image_size``) and ``valid``-padding models take any image."""
        if self.config.data.image_size or self.config.model.padding == "valid":
            return 1
        return 2**self.config.model.depth + 1

    def check_image_size(self, height: int, width: int) -> None:
        """Raise DataError for an image smaller than ``min_image_side`` on a side."""
        side = self.min_image_side
        if min(height, width) < side:
            raise DataError(
                f"the image is {width} x {height} px; this model needs at least {side} x {side} px "
                f"(a depth-{self.config.model.depth} U-Net needs 2 x 2 values in its deepest layer)"
            )

    def tile_count(self, height: int, width: int) -> int:
        """Network inputs (tiles, times 8 with test-time augmentation) for a height x width image,
        from the tiling geometry alone: what ``predict_image`` will run, counted without listing it."""
        settings, depth = self.config.predict, self.config.model.depth
        if self.config.data.image_size:
            height = width = self.config.data.image_size
        if self.config.model.padding == "valid":
            step = valid_tile_output(self.config)[1]
            count = overlap_tile_count(height, step) * overlap_tile_count(width, step)
        elif height <= settings.tile_size and width <= settings.tile_size:
            count = 1
        else:
            count = math.prod(sliding_count(n, settings.tile_size, settings.overlap, 2**depth) for n in (height, width))
        return count * (len(DIHEDRAL) if settings.tta else 1)

    # --- internals -----------------------------------------------------------------------------

    def _run_network(self, tiles: torch.Tensor) -> torch.Tensor:
        if not self.config.predict.tta:
            return self.network(tiles)
        # Images: the 8 symmetries of the square; volumes: mirrored along each axis (nnU-Net).
        return dihedral_average(self.network, tiles) if self.config.model.dims == 2 else mirror_average(self.network, tiles)

    def _tile_axes(self, sizes: Sequence[int]) -> list[AxisTiles]:
        settings = self.config.predict
        if self.config.model.padding == "valid":
            output_size, step = valid_tile_output(self.config)
            return [overlap_tile_axis(n, settings.tile_size, output_size, step) for n in sizes]
        window = self.window_shape
        if all(n <= side for n, side in zip(sizes, window)):
            return [whole_axis(n) for n in sizes]
        aligns = self.config.model.size_multiple
        return [sliding_axis(n, side, settings.overlap, settings.blend, align) for n, side, align in zip(sizes, window, aligns)]

    def _check_tensor(self, x: torch.Tensor) -> None:
        channels, dims = self.config.model.in_channels, self.config.model.dims
        if x.ndim != dims + 1 or x.shape[0] != channels:
            layout = "H, W" if dims == 2 else "D, H, W"
            raise ConfigError(
                f"expected a normalised image ({channels}, {layout}) for this {channels}-channel model, "
                f"got shape {tuple(x.shape)}"
            )
        if 0 in x.shape[1:]:
            raise DataError(f"the image is empty (shape {tuple(x.shape)})")

    def _model_channels(self, image: np.ndarray) -> np.ndarray:
        """``image`` with the model's channel count, converting only grey <-> RGB and dropping alpha."""
        have, want = image.shape[-1], self.config.model.in_channels
        if have == want:
            return image
        if want not in CONVERTIBLE_CHANNELS.get(have, ()):
            raise ConfigError(
                f"the image has {have} channels but the model was trained on {want}; "
                f"convert the image to {want} channel(s) or use a model trained on {have}"
            )
        return to_channels(image, want)


def _broadcast(indices: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Index tensors of each axis shaped to broadcast into their outer product (``np.ix_``)."""
    count = len(indices)
    return tuple(index.view([-1 if axis == position else 1 for axis in range(count)]) for position, index in enumerate(indices))
