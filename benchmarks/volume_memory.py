"""Peak memory of 3D sliding-window inference on a 256 x 512 x 512 volume: is it bounded by the
window, beyond the arrays the prediction must return?

One process: a 3D U-Net (base width 8, depth 4, binary) predicts a random uint8 volume in
64 x 128 x 128 windows (overlap 0.25, Gaussian blend, 2 windows a batch), then its labels.
Reported: peak RSS growth over the process with the raw volume loaded, the output arrays
(probabilities float32: 4 bytes per voxel and class channel; labels: 1 byte per voxel), and what
is left beyond them: the windows' working memory, which depends on the window, not the volume.

    PYTHONPATH=src python benchmarks/volume_memory.py --json benchmarks/results/volume-memory.json
    PYTHONPATH=src python benchmarks/volume_memory.py --shape 64 256 256    # a quick look
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from big_image import MIB, current_rss, peak_rss, reset_peak_rss
from common import command_line, machine, publish

from unetkit import tables


def measure(shape: Sequence[int], window: Sequence[int]) -> dict:
    from unetkit.cli.cpu import reuse_freed_memory

    reuse_freed_memory()  # as the CLI runs
    import torch

    from unetkit.config import Config, PredictConfig, UNetConfig
    from unetkit.inference.predictor import Predictor
    from unetkit.model.unet import UNet

    config = Config(
        model=UNetConfig(dims=3, in_channels=1, classes=1, depth=4, base_width=8, norm="instance",
                         pool=[[1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]]),
        predict=PredictConfig(window=list(window), overlap=0.25, batch_size=2),
    )  # fmt: skip
    config.data.normalize.mode = "zscore"
    torch.manual_seed(0)
    predictor = Predictor(UNet(config.model), config, device="cpu", precision="32")
    predictor.predict_image(np.zeros([side + 1 for side in window], np.uint8))  # warm up allocators
    volume = np.random.default_rng(0).integers(0, 256, tuple(shape), dtype=np.uint8)
    baseline = current_rss()
    peak_was_reset = reset_peak_rss()
    started = time.perf_counter()
    probabilities = predictor.predict_image(volume)
    labels = predictor.labels(probabilities)
    seconds = time.perf_counter() - started
    arrays = {"probabilities": probabilities.nbytes, "labels": labels.nbytes}
    growth = peak_rss() - baseline
    return {
        "shape": list(shape),
        "window": list(window),
        "seconds": round(seconds, 1),
        "raw_volume_mib": round(volume.nbytes / MIB, 1),
        "peak_growth_mib": round(growth / MIB, 1),
        "arrays_mib": {name: round(value / MIB, 1) for name, value in arrays.items()},
        "beyond_arrays_mib": round((growth - sum(arrays.values())) / MIB, 1),
        "peak_reset": peak_was_reset,
    }


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=[256, 512, 512], metavar=("D", "H", "W"))
    parser.add_argument("--window", type=int, nargs=3, default=[64, 128, 128], metavar=("D", "H", "W"))
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args(argv)
    result = measure(args.shape, args.window)
    result.update(command=command_line(__file__, argv), machine=machine())
    table = tables.format_table(
        ["volume", "window", "raw MiB", "peak growth MiB", "outputs MiB", "beyond outputs MiB", "seconds"],
        [["x".join(map(str, result["shape"])), "x".join(map(str, result["window"])), result["raw_volume_mib"],
          result["peak_growth_mib"], sum(result["arrays_mib"].values()), result["beyond_arrays_mib"], result["seconds"]]],
    )  # fmt: skip
    return publish(result, table, args.json)


if __name__ == "__main__":
    main()
