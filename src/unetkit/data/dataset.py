"""A torch Dataset over records: decoded images and masks, the paper's weight maps, training
patches (overlap-tile context for `valid` models) and augmentation, and a reproducible loader.

Randomness: each item seeds its random choices (patch position, augmentation) from the seed
``StepBatches`` pairs with its index (training: a function of seed, epoch and index), or else with a
number drawn from torch's generator, so ``torch.manual_seed`` decides them.
"""

from __future__ import annotations

import random
import signal
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from unetkit.config import DataConfig
from unetkit.data.annotations import read_annotation
from unetkit.data.reading import read_image, to_channels
from unetkit.data.records import Record, map_labels
from unetkit.data.transforms import build_transform, check_normalization, seed_transform, standardize_rule, to_unit_range
from unetkit.data.instance_maps import instance_target_maps, objects_of
from unetkit.data.weights import weight_map_for
from unetkit.errors import ConfigError, DataError

PRIOR_RECORDS = 16  # records read for the starting sigmoid outputs (sigmoid_target_shares)
Decoded = tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]  # raw image, class ids, weight map, instance maps


class RecordDataset(Dataset):
    """A Dataset over records that decodes a record at each use, or once for good where
    ``data.cache == "ram"`` (subclasses define ``_decode``)."""

    def __init__(self, records: Sequence[Record], data: DataConfig, samples_per_image: int = 1) -> None:
        if samples_per_image < 1:
            raise ConfigError(f"samples_per_image must be >= 1, got {samples_per_image}")
        self.records = list(records)
        self.data = data
        self.samples_per_image = samples_per_image  # each record appears this many times per epoch
        self._cache: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.records) * self.samples_per_image

    def _record_and_seed(self, key: int | tuple[int, int]) -> tuple[int, int]:
        """(record index, seed of the item's random choices) of an item's key: an index (the seed
        drawn from torch's generator) or (index, seed) from ``StepBatches``."""
        index, seed = key if isinstance(key, tuple) else (key, int(torch.randint(2**62, ())))
        if not 0 <= index < len(self):
            raise IndexError(f"item {index} of a dataset of {len(self)}")
        return index % len(self.records), seed

    def _decoded(self, record_index: int) -> Any:
        if record_index in self._cache:
            return self._cache[record_index]
        decoded = self._decode(self.records[record_index])
        if self.data.cache == "ram":
            self._cache[record_index] = decoded
        return decoded

    def _decode(self, record: Record) -> Any:
        raise NotImplementedError


class SegmentationDataset(RecordDataset):
    """Items ``{image (C, h, w) float32, mask (h', w') int64, weight (h', w') float32, maps (A, h',
    w') float32, name}``; ``weight`` only with ``data.weight_map``, ``maps`` only with
    ``instance_maps`` (the model's, ``data/instance_maps.py``: made from the instance labels, or the
    connected components where the masks have none).

    Training: a random ``input_size`` (else ``data.patch_size``) patch, or the image resized to
    ``data.image_size``, or the whole image; then ``data.augment``. `valid` models
    (``output_size < input_size``): the image is mirror-padded by the context margin, so the
    mask of an item - the centred ``output_size`` region of its input tile - can lie anywhere on
    the image, borders included. Evaluation: the whole image (resized only with
    ``data.image_size``) and its mask at the same size; sizes may differ between items, so use
    batch size 1 or one size per batch. Each record appears ``samples_per_image`` times per epoch.

    ``data.cache == "ram"`` keeps each decoded image, mask and weight map after its first use.
    Every DataLoader worker holds its own copy of the cache, filled as it goes, so memory is up to
    ``workers`` times the decoded dataset, and it only survives an epoch with persistent workers
    (``build_loader`` turns them on).
    """

    def __init__(
        self,
        records: Sequence[Record],
        data: DataConfig,
        in_channels: int,
        train: bool,
        input_size: int | None = None,
        output_size: int | None = None,
        samples_per_image: int = 1,
        instance_maps: Sequence[str] = (),
    ) -> None:
        if not records:
            raise DataError(f"no images to load from {data.path or 'the dataset'}; check --data and the layout")
        check_normalization(data.normalize, in_channels)
        super().__init__(records, data, samples_per_image)
        self.in_channels = in_channels
        self.instance_maps = tuple(instance_maps)
        self.output_size = output_size
        self.margin = _context_margin(input_size, output_size) if train else 0
        crop = (input_size or data.patch_size or None) if train else None
        self.transform = build_transform(data, train, crop, margin=self.margin)
        self._standardizers: dict[int, Callable[[np.ndarray], np.ndarray]] = {}  # an image's own statistics, measured once

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor | str]:
        """``key``: an index (randomness from torch's generator) or (index, seed) from ``StepBatches``."""
        record_index, seed = self._record_and_seed(key)
        seed_transform(self.transform, seed)
        image, labels, weight, maps = self._decoded(record_index)
        targets = {"image": to_unit_range(image, self.data.normalize), "mask": labels}
        if weight is not None:
            targets["weight"] = weight
        if maps is not None:
            targets["maps"] = maps
        sample = self.transform(**targets)
        if record_index not in self._standardizers:
            self._standardizers[record_index] = standardize_rule(image, self.data.normalize)
        standardized = self._standardizers[record_index](sample["image"])
        item: dict[str, torch.Tensor | str] = {
            "image": torch.from_numpy(np.ascontiguousarray(standardized.transpose(2, 0, 1))),
            "mask": torch.from_numpy(self._output_region(sample["mask"]).astype(np.int64)),
            "name": self.records[record_index].name,
        }
        if weight is not None:
            item["weight"] = torch.from_numpy(np.ascontiguousarray(self._output_region(sample["weight"])))
        if maps is not None:
            region = self._output_region(sample["maps"])  # OpenCV may have dropped an axis of one map
            item["maps"] = torch.from_numpy(np.ascontiguousarray(region.reshape(*region.shape[:2], -1).transpose(2, 0, 1)))
        return item

    def sigmoid_target_shares(self, count: int = PRIOR_RECORDS) -> list[float]:
        """The share of pixels that are on in each sigmoid output's target, over up to ``count``
        evenly spaced records: the foreground (binary labels), then each instance map; for
        ``UNet``'s ``start_sigmoids_at_``."""
        picks = (self._decoded(index) for index in evenly_spaced(len(self.records), count))
        decoded = ((labels, maps) for _, labels, _, maps in picks)
        return target_shares(decoded, self.data.labels.ignore_index, len(self.instance_maps))

    def _output_region(self, target: np.ndarray) -> np.ndarray:
        """The part of a training tile's mask the `valid` network predicts: its centre."""
        if not self.margin:
            return target
        return target[self.margin : self.margin + self.output_size, self.margin : self.margin + self.output_size]

    def _decode(self, record: Record) -> Decoded:
        image = to_channels(read_image(record.image, record.page, self.data.max_pixels), self.in_channels)
        raw, instances = read_annotation(record, self.data.max_pixels)
        if raw.shape != image.shape[:2]:
            raise DataError(
                f"mask {record.masks[0]} is {_size(raw)} but its image {record.image} is {_size(image)}; "
                "masks must match their image"
            )
        try:
            labels = map_labels(raw, self.data.labels)
        except ValueError as exc:
            raise DataError(
                f"mask {record.masks[0]}: {exc}; fix data.labels (unetkit data inspect lists the values)"
            ) from exc
        weight = weight_map_for(labels, instances, self.data) if self.data.weight_map else None
        maps = None
        if self.instance_maps:
            maps = instance_target_maps(objects_of(labels, instances, self.data.labels), self.instance_maps)
        return image, labels, weight, maps


def evenly_spaced(total: int, count: int) -> list[int]:
    """Up to ``count`` indices spread evenly over 0..total-1."""
    return np.unique(np.linspace(0, total - 1, min(count, total)).round().astype(int)).tolist()


def target_shares(decoded: Iterable[tuple[np.ndarray, np.ndarray | None]], ignore_index: int, maps: int) -> list[float]:
    """The share of counted pixels (not ``ignore_index``) on in each target: the foreground (class
    id 1) of each ``(labels, instance maps or None)``, then each of the ``maps`` instance maps."""
    on, pixels = np.zeros(maps + 1), 0
    for labels, instance_maps in decoded:
        counted = labels != ignore_index
        on[0] += np.count_nonzero(labels[counted] == 1)
        if instance_maps is not None:
            on[1:] += instance_maps[counted].sum(axis=0)
        pixels += np.count_nonzero(counted)
    return (on / max(pixels, 1)).tolist()


def _context_margin(input_size: int | None, output_size: int | None) -> int:
    """Context pixels on each side of a `valid` model's output tile; 0 for `same` models."""
    if output_size is None or output_size == input_size:
        return 0
    if input_size is None:
        raise ConfigError("a `valid`-padding model trains on tiles: set data.patch_size (the network input size)")
    context = input_size - output_size
    if context < 0 or context % 2:
        raise ConfigError(
            f"output size {output_size} cannot be the centre of input size {input_size}; "
            "take both from the model (UNet.output_size)"
        )
    return context // 2


def _size(array: np.ndarray) -> str:
    return f"{array.shape[1]}x{array.shape[0]}"


def build_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    workers: int,
    batch_sampler: Sampler[list] | None = None,
) -> DataLoader:
    """A DataLoader with pinned memory on CUDA machines and persistent seeded workers; batches of
    ``batch_size`` (shuffled or not), or those of ``batch_sampler`` (training: ``StepBatches``)."""
    batching = {"batch_sampler": batch_sampler} if batch_sampler else {"batch_size": batch_size, "shuffle": shuffle}
    return DataLoader(
        dataset,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
        worker_init_fn=init_worker,
        collate_fn=collate_same_size,
        **batching,
    )


def collate_same_size(items: list[dict]) -> dict:
    """A batch of items; images of different sizes cannot share one, which a user fixes with a flag."""
    sizes = {tuple(item["image"].shape[-2:]) for item in items}
    if len(sizes) > 1:
        names = ", ".join(f"{item['name']} ({item['image'].shape[-1]}x{item['image'].shape[-2]})" for item in items)
        raise DataError(
            f"images of different sizes in one batch ({names}): train on patches (--patch-size N) or resized "
            "images (--image-size N), or let the plan choose (drop --no-plan)"
        )
    return default_collate(items)


def stop_workers(loader: DataLoader) -> None:
    """Shut a loader's persistent workers down now. They ignore SIGTERM (see ``init_worker``), so
    workers left to the interpreter's exit, after a stop signal, would be waited for forever."""
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()  # torch has no public call for persistent workers
    loader._iterator = None


class StepBatches(Sampler[list[tuple[int, int]]]):
    """Batches of ``(index, seed)`` keys for the optimizer steps from ``start`` on, endlessly: epoch
    after epoch of ``order`` (a sampler with ``set_epoch``, such as a DistributedSampler), each cut
    to whole batches, every key's seed derived from (seed, epoch, index).

    One loader iteration serves the whole run, so no worker idles at an epoch's end (the epochs of a
    small dataset are a few batches), and an item's patch and augmentation depend on nothing but
    (seed, epoch, index): not on the number of loader workers or processes, nor on a resume.
    """

    def __init__(self, order: Sampler[int], batch_size: int, seed: int, start: int = 0) -> None:
        if len(order) < batch_size:
            raise ConfigError(f"a batch of {batch_size} needs at least as many training items; this process has {len(order)}")
        self.order = order
        self.batch_size = batch_size
        self.seed = seed
        self.start = start  # the optimizer step the next iteration begins at

    @property
    def steps_per_epoch(self) -> int:
        return len(self.order) // self.batch_size

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, offset = divmod(self.start, self.steps_per_epoch)
        while True:
            epoch += 1
            self.order.set_epoch(epoch)
            indices = list(self.order)
            for step in range(offset, self.steps_per_epoch):
                batch = indices[step * self.batch_size : (step + 1) * self.batch_size]
                yield [(index, item_seed(self.seed, epoch, index)) for index in batch]
            offset = 0


def item_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


def init_worker(worker_id: int) -> None:
    """Seed numpy and random in a loader worker from torch's seed for it, as torch does for itself:
    reproducible, and different per worker. SIGTERM is left to the main process, which saves
    last.pt and then stops its workers (they also exit by themselves when it dies). OpenCV's thread
    count is not touched here: in a forked worker whose parent has used OpenCV's thread pool,
    cv2.setNumThreads waits for threads that do not exist in the child (a deadlock)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
