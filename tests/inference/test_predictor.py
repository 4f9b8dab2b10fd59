from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from inference_helpers import tiny_config, tiny_model

from unetkit.checkpoint import save_checkpoint
from unetkit.config import Config, NormalizeConfig
from unetkit.data.transforms import normalize
from unetkit.errors import CheckpointError, ConfigError, DataError
from unetkit.inference import postprocess
from unetkit.inference.networks import dihedral_transform, undo_dihedral_transform
from unetkit.inference.predictor import Predictor
from unetkit.model.unet import to_probabilities
from unetkit.model.sizes import valid_input_size, valid_output_size


def predictor_for(config: Config, seed: int = 0) -> Predictor:
    return Predictor(tiny_model(config, seed), config, precision="32")


def whole_image_probabilities(config: Config, x: torch.Tensor) -> torch.Tensor:
    """The reference: the same network run once on the whole image (no tiles)."""
    whole = tiny_config(config.model.padding, config.model.depth, config.model.classes, config.model.in_channels,
                        tile_size=512)
    return predictor_for(whole).predict_tensor(x)


class TestSamePadding:
    # Tiles share the whole image's pooling grid; what differs is the zero padding each tile's
    # convolutions see at its own border, which a tapering window weighs down (gaussian best).
    @pytest.mark.parametrize(
        ("blend", "mean_tolerance", "p99_tolerance"),
        [("gaussian", 2e-3, 0.025), ("linear", 6e-3, 0.06), ("constant", 0.02, 0.2)],
    )
    def test_tiled_prediction_matches_the_whole_image(self, blend: str, mean_tolerance: float, p99_tolerance: float) -> None:
        config = tiny_config(tile_size=64, overlap=0.5, blend=blend)
        x = torch.rand(1, 161, 203, generator=torch.Generator().manual_seed(0))
        tiled = predictor_for(config).predict_tensor(x)
        difference = (tiled - whole_image_probabilities(config, x)).abs()
        assert difference.mean() < mean_tolerance
        assert difference.flatten().quantile(0.99) < p99_tolerance

    @pytest.mark.parametrize("shape", [(97, 131), (20, 150), (5, 3)])
    def test_odd_and_thin_images_keep_their_shape(self, shape: tuple[int, int]) -> None:
        config = tiny_config(classes=3, tile_size=32)
        probabilities = predictor_for(config).predict_tensor(torch.rand(1, *shape))
        assert probabilities.shape == (3, *shape) and probabilities.dtype == torch.float32
        torch.testing.assert_close(probabilities.sum(0), torch.ones(shape))

    def test_an_image_within_one_tile_is_one_network_pass(self) -> None:
        config = tiny_config(tile_size=128)
        model = tiny_model(config)
        x = torch.rand(1, 97, 61)
        with torch.no_grad():
            expected = to_probabilities(model(x[None]))[0]
        torch.testing.assert_close(Predictor(model, config, precision="32").predict_tensor(x), expected)


class TestValidPadding:
    @pytest.mark.parametrize("depth", [2, 3])
    @pytest.mark.parametrize("shape", [(97, 131), (9, 14)])
    def test_overlap_tile_equals_the_network_on_the_whole_mirrored_image(self, depth: int, shape: tuple[int, int]) -> None:
        tile = valid_input_size(40, depth)
        config = tiny_config("valid", depth, classes=2, tile_size=tile)
        model = tiny_model(config)
        x = torch.rand(1, *shape)
        margin = (tile - valid_output_size(tile, depth)) // 2
        height, width = (valid_input_size(side, depth) for side in shape)
        pads = ((0, 0), (margin, height - shape[0] - margin), (margin, width - shape[1] - margin))
        padded = torch.from_numpy(np.pad(x.numpy(), pads, mode="reflect"))
        with torch.no_grad():
            expected = to_probabilities(model(padded[None]))[0, :, : shape[0], : shape[1]]
        stitched = Predictor(model, config, precision="32").predict_tensor(x)
        torch.testing.assert_close(stitched, expected, atol=1e-5, rtol=0)

    def test_invalid_tile_size_names_the_nearest_valid_ones(self) -> None:
        with pytest.raises(ConfigError, match=r"tile_size.*use 44 or 48"):
            predictor_for(tiny_config("valid", depth=2, tile_size=46))

    def test_tile_too_small_for_any_output_step_is_refused(self) -> None:
        smallest = valid_input_size(1, 3)
        with pytest.raises(ConfigError, match=rf"{smallest}.*use tile_size {valid_input_size(8, 3)}"):
            predictor_for(tiny_config("valid", depth=3, tile_size=smallest))


class TestSettings:
    @pytest.mark.parametrize(
        ("settings", "message"),
        [
            ({"tile_size": 30}, "multiple of 4.*use 28 or 32"),
            ({"tile_size": 2}, "multiple of 4.*use 4"),
            ({"overlap": 1.0}, "overlap"),
            ({"batch_size": 0}, "batch_size"),
        ],
    )
    def test_unusable_predict_settings_are_config_errors(self, settings: dict, message: str) -> None:
        with pytest.raises(ConfigError, match=message):
            predictor_for(tiny_config(**settings))


class TestTestTimeAugmentation:
    @pytest.mark.parametrize("transform", [(0, True), (1, False), (2, False), (3, True)])
    def test_tta_is_equivariant_under_the_dihedral_group(self, transform: tuple[int, bool]) -> None:
        predictor = predictor_for(tiny_config(classes=2, tile_size=64, tta=True))
        x = torch.rand(1, 37, 50)
        direct = predictor.predict_tensor(x)
        via_transformed = undo_dihedral_transform(predictor.predict_tensor(dihedral_transform(x, *transform)), *transform)
        torch.testing.assert_close(via_transformed, direct, atol=1e-5, rtol=0)

    def test_tta_changes_the_prediction_of_an_asymmetric_network(self) -> None:
        x = torch.rand(1, 37, 50)
        plain = predictor_for(tiny_config(tile_size=64)).predict_tensor(x)
        averaged = predictor_for(tiny_config(tile_size=64, tta=True)).predict_tensor(x)
        assert (plain - averaged).abs().max() > 1e-3

    def test_tta_runs_through_tiles(self) -> None:
        probabilities = predictor_for(tiny_config(tile_size=32, tta=True)).predict_tensor(torch.rand(1, 70, 45))
        assert probabilities.shape == (1, 70, 45)


class TestImages:
    @pytest.mark.parametrize("mode", ["scale", "meanstd", "percentile"])
    def test_tile_by_tile_normalisation_equals_normalising_the_whole_image(self, mode: str) -> None:
        """Tiles are normalised as they are cut; the percentiles still come from the whole image."""
        config = tiny_config(tile_size=32)
        config.data.normalize = NormalizeConfig(mode=mode, mean=[0.4], std=[0.2], low=5.0, high=95.0)
        predictor = predictor_for(config)
        image = np.random.default_rng(0).integers(0, 4096, (50, 70, 1), dtype=np.uint16)
        image[:25] //= 8  # a dark half: per-tile percentiles would differ from the image's
        expected = predictor.predict_tensor(torch.from_numpy(normalize(image, config.data.normalize)).permute(2, 0, 1))
        np.testing.assert_allclose(predictor.predict_image(image), expected.numpy(), atol=1e-6)

    @pytest.mark.parametrize(("model_channels", "image_shape"), [(3, (40, 30)), (3, (40, 30, 1)), (1, (40, 30, 3)), (3, (40, 30, 4))])
    def test_grey_rgb_and_alpha_are_converted(self, model_channels: int, image_shape: tuple[int, ...]) -> None:
        predictor = predictor_for(tiny_config(in_channels=model_channels))
        probabilities = predictor.predict_image(np.full(image_shape, 100, dtype=np.uint8))
        assert probabilities.shape == (1, 40, 30)

    @pytest.mark.parametrize(("model_channels", "image_channels"), [(4, 3), (3, 5), (2, 1)])
    def test_channel_counts_the_model_cannot_take_name_both(self, model_channels: int, image_channels: int) -> None:
        predictor = predictor_for(tiny_config(in_channels=model_channels))
        with pytest.raises(ConfigError, match=rf"{image_channels} channels.*trained on {model_channels}"):
            predictor.predict_image(np.zeros((20, 20, image_channels), dtype=np.uint8))

    def test_tensor_with_the_wrong_channels_is_refused(self) -> None:
        with pytest.raises(ConfigError, match=r"\(3, H, W\).*\(1, 20, 20\)"):
            predictor_for(tiny_config(in_channels=3)).predict_tensor(torch.zeros(1, 20, 20))

    def test_empty_image_is_a_data_error(self) -> None:
        with pytest.raises(DataError, match="empty|pixels"):
            predictor_for(tiny_config()).predict_image(np.zeros((0, 20, 1), dtype=np.uint8))

    def test_models_trained_on_resized_images_predict_at_the_original_size(self) -> None:
        config = tiny_config(tile_size=32)
        config.data.image_size = 32
        probabilities = predictor_for(config).predict_image(np.zeros((50, 70, 1), dtype=np.uint8))
        assert probabilities.shape == (1, 50, 70)

    def test_labels_threshold_binary_and_argmax_multiclass(self) -> None:
        config = tiny_config(threshold=0.7)
        predictor = predictor_for(config)
        binary = np.array([[[0.1, 0.69, 0.7, 0.95]]], dtype=np.float32)
        np.testing.assert_array_equal(predictor.labels(binary), [[0, 0, 1, 1]])
        multiclass = np.array([[[0.2, 0.1]], [[0.5, 0.2]], [[0.3, 0.7]]], dtype=np.float32)
        labels = predictor_for(tiny_config(classes=3)).labels(multiclass)
        assert labels.dtype == np.uint8
        np.testing.assert_array_equal(labels, [[1, 2]])

    def test_labels_are_computed_in_bands_without_seams(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(postprocess, "LABEL_PIXELS", 7)  # 1 row per band for width 5
        probabilities = torch.rand(3, 11, 5)
        labels = predictor_for(tiny_config(classes=3)).labels(probabilities)
        np.testing.assert_array_equal(labels, probabilities.argmax(0).numpy())


class TestModelState:
    def test_a_training_model_is_predicted_in_eval_mode_and_left_training(self) -> None:
        config = tiny_config()
        model = tiny_model(config)
        x = torch.rand(1, 24, 24)
        expected = Predictor(model, config, precision="32").predict_tensor(x)
        model.train()
        torch.testing.assert_close(Predictor(model, config, precision="32").predict_tensor(x), expected)
        assert model.training


class TestFromCheckpoint:
    def test_checkpoint_round_trip_predicts_the_same(self, tmp_path: Path) -> None:
        config = tiny_config(classes=2)
        model = tiny_model(config)
        save_checkpoint(tmp_path / "best.pt", config, model.state_dict())
        x = torch.rand(1, 40, 44)
        loaded = Predictor.from_checkpoint(tmp_path / "best.pt", device="cpu", precision="32")
        assert loaded.config.model == config.model
        # batch norms folded into their convolutions: an inference-only model, same outputs
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in loaded.network.model.modules())
        torch.testing.assert_close(loaded.predict_tensor(x), Predictor(model, config, precision="32").predict_tensor(x))

    @pytest.mark.parametrize("channels_last", [True, False])
    def test_the_inference_layout_set_is_the_one_predicted_in_whatever_training_ran_in(
        self, tmp_path: Path, channels_last: bool
    ) -> None:
        config = tiny_config()
        config.predict.memory_layout = "channels-last" if channels_last else "contiguous"
        config.train.memory_layout = "contiguous" if channels_last else "channels-last"
        save_checkpoint(tmp_path / "best.pt", config, tiny_model(config).state_dict())
        loaded = Predictor.from_checkpoint(tmp_path / "best.pt", device="cpu", precision="32")
        expected = torch.channels_last if channels_last else torch.contiguous_format
        assert loaded.network.format == expected
        assert loaded.network.model.encoder[0][1][0].weight.is_contiguous(memory_format=expected)

    def test_weights_that_do_not_fit_the_config_are_a_checkpoint_error(self, tmp_path: Path) -> None:
        config = tiny_config()
        state = tiny_model(tiny_config(depth=3)).state_dict()
        save_checkpoint(tmp_path / "odd.pt", config, state)
        with pytest.raises(CheckpointError, match="odd.pt"):
            Predictor.from_checkpoint(tmp_path / "odd.pt", device="cpu")

    def test_unknown_engine_is_a_config_error(self, tmp_path: Path) -> None:
        config = tiny_config()
        save_checkpoint(tmp_path / "best.pt", config, tiny_model(config).state_dict())
        with pytest.raises(ConfigError, match="onnxruntime"):
            Predictor.from_checkpoint(tmp_path / "best.pt", engine="tensorrt")


@pytest.mark.parametrize(
    ("padding", "depth", "predict"),
    [("same", 2, {"tile_size": 64, "overlap": 0.25}), ("same", 3, {"tile_size": 64, "overlap": 0.0, "tta": True}),
     ("valid", 2, {"tile_size": 92})],
)  # fmt: skip
def test_tile_count_is_what_the_tiling_runs_counted_without_listing_it(padding: str, depth: int, predict: dict) -> None:
    """A server prices a request with ``tile_count`` before decoding it; it must match the tiling."""
    predictor = predictor_for(tiny_config(padding, depth, **predict))
    augmentations = 8 if predict.get("tta") else 1
    for height, width in [(9, 9), (17, 64), (63, 65), (100, 257), (1000, 4097), (5, 30_000)]:
        rows, cols = predictor._tile_axes((height, width))
        assert predictor.tile_count(height, width) == len(rows.starts) * len(cols.starts) * augmentations, (height, width)


def test_an_image_smaller_than_the_model_takes_is_refused_in_one_line() -> None:
    """Instance norm at depth 4: 16 x 16 px leaves one value per channel in the deepest layer, which
    failed inside torch; the predictor refuses it, naming the smallest side, whatever the norm."""
    for norm in ("instance", "batch"):
        predictor = predictor_for(tiny_config(depth=4, norm=norm, tile_size=64))
        assert predictor.min_image_side == 17
        with pytest.raises(DataError, match="the image is 40 x 16 px; this model needs at least 17 x 17 px"):
            predictor.predict_image(np.zeros((16, 40), np.uint8))
        assert predictor.predict_image(np.zeros((17, 17), np.uint8)).shape == (1, 17, 17)
    assert predictor_for(tiny_config("valid", 2, tile_size=92)).min_image_side == 1
