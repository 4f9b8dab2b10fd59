from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sample_data import SAMPLE_DATA, needs_sample

from unetkit.config import DataConfig, NormalizeConfig
from unetkit.data.dataset import SegmentationDataset, build_loader
from unetkit.data.records import Record
from unetkit.data.synthetic import generate_dataset, make_sample
from unetkit.errors import ConfigError, DataError
from unetkit.model.sizes import valid_output_size

SIZE = 64
VALID_DEPTH = 2
VALID_INPUT = 60


def _records(root: Path, with_instances: bool = True) -> list[Record]:
    return [
        Record(
            image=image,
            masks=(root / "masks" / image.name,),
            extra={"instances": root / "instances" / image.name} if with_instances else {},
        )
        for image in sorted((root / "images").iterdir())
    ]


@pytest.fixture(scope="module")
def blobs(tmp_path_factory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("blobs"), n_images=3, size=SIZE, seed=0)


@pytest.fixture()
def records(blobs: Path) -> list[Record]:
    return _records(blobs)


def _write_pair(folder: Path, name: str, image: np.ndarray, mask: np.ndarray) -> Record:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(folder / "images" / name)
    Image.fromarray(mask).save(folder / "masks" / name)
    return Record(image=folder / "images" / name, masks=(folder / "masks" / name,))


# ------------------------------------------------------------------------------- item shapes


@dataclasses.dataclass
class Case:
    data: DataConfig
    train: bool
    image_side: int
    mask_side: int
    input_size: int | None = None
    output_size: int | None = None


VALID_OUTPUT = valid_output_size(VALID_INPUT, VALID_DEPTH)
CASES = {
    "train-patch": Case(DataConfig(patch_size=32), True, 32, 32),
    "train-resize": Case(DataConfig(image_size=48), True, 48, 48),
    "train-whole": Case(DataConfig(), True, SIZE, SIZE),
    "eval-whole": Case(DataConfig(patch_size=32), False, SIZE, SIZE),
    "eval-resize": Case(DataConfig(image_size=48), False, 48, 48),
    "train-valid": Case(DataConfig(patch_size=VALID_INPUT), True, VALID_INPUT, VALID_OUTPUT, VALID_INPUT, VALID_OUTPUT),
    "eval-valid": Case(DataConfig(patch_size=VALID_INPUT), False, SIZE, SIZE, VALID_INPUT, VALID_OUTPUT),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_item_shapes_and_types(records, case: Case) -> None:
    dataset = SegmentationDataset(records, case.data, 1, case.train, case.input_size, case.output_size)
    item = dataset[0]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (1, case.image_side, case.image_side)
    assert item["mask"].dtype == torch.int64 and item["mask"].shape == (case.mask_side, case.mask_side)
    assert set(item["mask"].unique().tolist()) <= {0, 1}
    assert item["name"] == records[0].name and "weight" not in item


def test_valid_sizes_come_from_the_model_formula() -> None:
    assert VALID_OUTPUT == 20  # depth 2: 60 -> 56 -> 28 -> 24 -> 12 -> 8 -> 16 -> 12 ... -> 20


def test_rgb_conversion_follows_in_channels(records) -> None:
    item = SegmentationDataset(records, DataConfig(patch_size=16), 3, True)[0]
    assert item["image"].shape == (3, 16, 16)


@pytest.mark.parametrize("augment", ["none", "paper"])
def test_valid_mask_is_the_centre_of_the_input_tile(tmp_path, augment: str) -> None:
    objects = make_sample(np.random.default_rng(0), 48)[1][:40, :36] > 0
    record = _write_pair(tmp_path, "a.png", np.where(objects, 220, 30).astype(np.uint8), objects.astype(np.uint8) * 255)
    data = DataConfig(patch_size=VALID_INPUT, augment=augment)
    dataset = SegmentationDataset([record], data, 1, True, VALID_INPUT, VALID_OUTPUT, samples_per_image=5)
    margin = (VALID_INPUT - VALID_OUTPUT) // 2
    for item in dataset:
        centre = item["image"][0, margin:-margin, margin:-margin]
        assert torch.mean(((centre > 0.5).long() == item["mask"]).float()) > 0.95


def test_valid_output_tiles_reach_every_border(tmp_path) -> None:
    """Each pixel holds its own position, so the centre of an item tells where its tile lay."""
    side = 24
    position = np.arange(side * side, dtype=np.uint16).reshape(side, side) + 1
    record = _write_pair(tmp_path, "p.png", position, np.zeros((side, side), np.uint8))
    data = DataConfig(patch_size=VALID_INPUT, augment="none")
    dataset = SegmentationDataset([record], data, 1, True, VALID_INPUT, VALID_OUTPUT, samples_per_image=80)
    margin = (VALID_INPUT - VALID_OUTPUT) // 2
    corners = [round(float(item["image"][0, margin, margin]) * 65535) - 1 for item in dataset]
    rows, cols = np.divmod(corners, side)
    assert rows.min() == 0 and cols.min() == 0
    assert rows.max() == side - VALID_OUTPUT and cols.max() == side - VALID_OUTPUT


# ------------------------------------------------------------------------------- weight maps, cache


@pytest.mark.parametrize("with_instances", [True, False], ids=["instances", "components"])
def test_weight_map_is_returned_when_asked(blobs, with_instances: bool) -> None:
    data = DataConfig(weight_map=True, augment="paper", patch_size=48)
    item = SegmentationDataset(_records(blobs, with_instances), data, 1, True)[0]
    assert item["weight"].dtype == torch.float32 and item["weight"].shape == item["mask"].shape
    assert item["weight"].min() > 0


@pytest.mark.parametrize("padding_model", [None, (VALID_INPUT, valid_output_size(VALID_INPUT, VALID_DEPTH))], ids=["same", "valid"])
def test_instance_maps_ride_along_with_the_mask_through_augmentation(blobs, padding_model) -> None:
    sizes = {"input_size": padding_model[0], "output_size": padding_model[1]} if padding_model else {}
    data = DataConfig(augment="paper", patch_size=48)
    dataset = SegmentationDataset(_records(blobs), data, 1, True, instance_maps=("border", "distance"), **sizes)
    peaks = []
    for key in [(index, seed) for index in range(len(dataset)) for seed in range(4)]:
        item = dataset[key]
        assert item["maps"].dtype == torch.float32 and item["maps"].shape == (2, *item["mask"].shape)
        border, distance = item["maps"]
        assert (border[item["mask"] == 0] == 0).all() and (distance[item["mask"] == 0] == 0).all()  # only on objects
        assert set(border.unique().tolist()) <= {0.0, 1.0}  # nearest-neighbour warps keep the values
        peaks.append(float(distance.max()))
    assert max(peaks) > 0.3  # patches show the insides of objects, not only their borders
    plain = SegmentationDataset(_records(blobs), data, 1, True, **sizes)[key]
    assert torch.equal(plain["mask"], item["mask"]) and "maps" not in plain  # the same random warp


def test_touching_instances_get_the_border_term_that_merged_components_lack(tmp_path) -> None:
    instances = np.zeros((24, 24), np.uint8)
    instances[6:18, 4:12], instances[6:18, 12:20] = 1, 2  # two objects side by side
    record = _write_pair(tmp_path, "a.png", instances * 100, (instances > 0).astype(np.uint8) * 255)
    Image.fromarray(instances).save(tmp_path / "instances.png")
    with_instances = dataclasses.replace(record, extra={"instances": tmp_path / "instances.png"})
    data = DataConfig(weight_map=True, weight_w0=10.0, weight_sigma=3.0)
    merged, separate = (SegmentationDataset([r], data, 1, False)[0]["weight"] for r in (record, with_instances))
    assert len(merged.unique()) == 2  # one object: class weights only
    junction = separate[5, 12]  # background next to where the two objects meet
    assert junction > merged[5, 12] + 5


def test_ram_cache_returns_identical_items_without_reading_again(tmp_path, blobs) -> None:
    root = tmp_path / "copy"
    shutil.copytree(blobs, root)
    records = _records(root)
    data = DataConfig(cache="ram", weight_map=True, augment="none")
    cached = SegmentationDataset(records, data, 1, False)
    first = [cached[i] for i in range(len(cached))]
    shutil.rmtree(root)
    for index, item in enumerate(first):
        again = cached[index]
        for key in ("image", "mask", "weight"):
            assert torch.equal(item[key], again[key])


def test_samples_per_image_repeats_every_record(records) -> None:
    dataset = SegmentationDataset(records, DataConfig(patch_size=16), 1, True, samples_per_image=4)
    assert len(dataset) == 4 * len(records)
    assert [dataset[i]["name"] for i in range(len(dataset))] == [r.name for r in records] * 4


def test_meanstd_statistics_are_applied(records) -> None:
    plain = SegmentationDataset(records, DataConfig(augment="none"), 1, False)[0]["image"]
    normalize = NormalizeConfig(mode="meanstd", mean=[0.5], std=[0.25])
    standardised = SegmentationDataset(records, DataConfig(augment="none", normalize=normalize), 1, False)[0]["image"]
    torch.testing.assert_close(standardised, (plain - 0.5) / 0.25)


def test_zscore_patches_use_the_whole_images_statistics_as_the_predictor_does(records) -> None:
    whole = SegmentationDataset(records, DataConfig(augment="none", normalize=NormalizeConfig(mode="zscore")), 1, False)[0]
    patches = SegmentationDataset(records, DataConfig(augment="none", normalize=NormalizeConfig(mode="zscore")), 1, True, input_size=16)
    image = whole["image"]
    assert abs(float(image.mean())) < 1e-4 and abs(float(image.std(unbiased=False)) - 1.0) < 1e-3
    patch = patches[(0, 7)]["image"]
    assert patch.shape == (1, 16, 16)
    values = set(np.round(image.numpy().ravel(), 4))
    assert set(np.round(patch.numpy().ravel(), 4)) <= values  # no flips of values: each a pixel of the whole image's rule


# ------------------------------------------------------------------------------- errors


def test_mask_of_another_size_names_both_files(tmp_path) -> None:
    record = _write_pair(tmp_path, "a.png", np.zeros((20, 30), np.uint8), np.zeros((20, 31), np.uint8))
    with pytest.raises(DataError, match=r"masks/a.png is 31x20 .*images/a.png is 30x20"):
        SegmentationDataset([record], DataConfig(), 1, False)[0]


def test_unreadable_image_names_the_file(tmp_path) -> None:
    record = _write_pair(tmp_path, "a.png", np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8))
    record.image.write_bytes(b"not a png")
    with pytest.raises(DataError, match="a.png"):
        SegmentationDataset([record], DataConfig(), 1, False)[0]


def test_mask_values_outside_the_label_mapping_name_the_mask(tmp_path) -> None:
    record = _write_pair(tmp_path, "a.png", np.zeros((8, 8), np.uint8), np.full((8, 8), 7, np.uint8))
    data = DataConfig()
    data.labels = dataclasses.replace(data.labels, mode="values", values={0: 0, 1: 1})
    with pytest.raises(DataError, match="masks/a.png.*7"):
        SegmentationDataset([record], data, 1, False)[0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"records": []}, "no images"),
        ({"samples_per_image": 0}, "samples_per_image"),
        ({"input_size": 60, "output_size": 21}, "centre"),
        ({"data": DataConfig(normalize=NormalizeConfig(mode="meanstd"))}, "fit_normalization"),
    ],
    ids=["empty", "samples", "odd-context", "meanstd-unfitted"],
)
def test_unusable_settings_fail_at_construction(records, kwargs: dict, message: str) -> None:
    arguments = {"records": records, "data": DataConfig(), "in_channels": 1, "train": True} | kwargs
    with pytest.raises((ConfigError, DataError), match=message):
        SegmentationDataset(**arguments)


def test_valid_training_without_a_tile_size_is_a_config_error(records) -> None:
    with pytest.raises(ConfigError, match="patch_size"):
        SegmentationDataset(records, DataConfig(), 1, True, output_size=VALID_OUTPUT, input_size=None)
    with pytest.raises(ConfigError, match="centre"):
        SegmentationDataset(records, DataConfig(), 1, True, input_size=20, output_size=VALID_OUTPUT + 2)


# ------------------------------------------------------------------------------- loader


def _epoch(dataset: SegmentationDataset, workers: int) -> list[torch.Tensor]:
    torch.manual_seed(0)
    loader = build_loader(dataset, batch_size=2, shuffle=True, workers=workers)
    return [batch["image"] for batch in loader]


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_batches_are_reproducible(records, workers: int) -> None:
    dataset = SegmentationDataset(records, DataConfig(patch_size=32, augment="paper"), 1, True, samples_per_image=2)
    first, second = _epoch(dataset, workers), _epoch(dataset, workers)
    assert [b.shape for b in first] == [(2, 1, 32, 32)] * 3
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_workers_draw_different_augmentations(records) -> None:
    dataset = SegmentationDataset(records[:1], DataConfig(patch_size=32, augment="paper"), 1, True, samples_per_image=2)
    loader = build_loader(dataset, batch_size=1, shuffle=False, workers=2)
    first, second = (batch["image"] for batch in loader)  # one item from each worker
    assert not torch.equal(first, second)


# ------------------------------------------------------------------------------- real data


@needs_sample("carvana")
def test_carvana_pair_loads_as_a_binary_patch() -> None:
    image = sorted((SAMPLE_DATA / "carvana" / "train").glob("*.jpg"))[0]
    mask = SAMPLE_DATA / "carvana" / "train_masks" / f"{image.stem}_mask.gif"
    item = SegmentationDataset([Record(image=image, masks=(mask,))], DataConfig(patch_size=256), 3, True)[0]
    assert item["image"].shape == (3, 256, 256) and item["mask"].shape == (256, 256)
    assert set(item["mask"].unique().tolist()) <= {0, 1}


def test_step_batches_make_items_a_function_of_seed_epoch_and_index(tmp_path):
    import itertools

    from torch.utils.data import DistributedSampler

    from unetkit.config import DataConfig
    from unetkit.data.dataset import SegmentationDataset, StepBatches
    from unetkit.data.layouts import discover
    from unetkit.data.synthetic import generate_dataset

    records = discover(generate_dataset(tmp_path / "d", 5, 40, seed=0)).records
    dataset = SegmentationDataset(records, DataConfig(patch_size=24, augment="strong"), 1, train=True)
    order = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=3)
    batches = StepBatches(order, batch_size=2, seed=5)
    assert batches.steps_per_epoch == 2  # 5 items: the fifth waits for another epoch's order

    def steps(start: int, count: int) -> list:
        batches.start = start
        return list(itertools.islice(batches, count))

    whole = steps(0, 6)  # three epochs
    assert steps(3, 3) == whole[3:], "a stream started mid-epoch is the tail of the whole stream"
    epochs = [sorted(index for batch in whole[e : e + 2] for index, _ in batch) for e in (0, 2, 4)]
    assert all(len(set(indices)) == 4 for indices in epochs)
    first = [dataset[key]["image"] for key in whole[0]]
    assert all(torch.equal(a, dataset[key]["image"]) for a, key in zip(first, steps(0, 1)[0]))
    key_elsewhere = next(key for batch in whole[2:] for key in batch if key[0] == whole[0][0][0])
    assert key_elsewhere[1] != whole[0][0][1], "another epoch draws another patch of the same image"


def test_sigmoid_target_shares_are_the_foreground_and_map_pixels_on(blobs) -> None:
    records = _records(blobs)
    dataset = SegmentationDataset(records, DataConfig(), 1, True, instance_maps=("core", "border"))
    foreground, core, border = dataset.sigmoid_target_shares()
    masks = [np.asarray(Image.open(record.masks[0])) > 0 for record in records]
    assert foreground == pytest.approx(np.mean(masks))  # same-sized images: the mean of the means
    assert 0 < core < foreground and 0 < border < foreground
