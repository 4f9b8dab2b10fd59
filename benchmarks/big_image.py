"""Peak memory of tiled prediction on big images: does anything but the output arrays grow?

Each size runs in a fresh process (peak RSS cannot be reset portably), predicting a random RGB
image with a small U-Net (base width 8, depth 4) in 512 px tiles. Reported per size: peak RSS
growth over the process's state with the raw image loaded, the output arrays the prediction must
hold (float32 probabilities, uint8 labels), and what is left beyond them: the tiling overhead,
which should not depend on the image size (tiles are normalised one by one: no float copy of
the image).

    PYTHONPATH=src python benchmarks/big_image.py            # 2000 and 6000 px
    PYTHONPATH=src python benchmarks/big_image.py --sizes 1000 3000 --tile 256
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import typing
from pathlib import Path

import numpy as np

from unetkit.config import Precision

MIB = 2**20


def current_rss() -> int:
    """Resident set size of this process now, in bytes (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status (this benchmark needs Linux)")


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def reset_peak_rss() -> bool:
    """Restart the kernel's peak-RSS counter from the current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure(size: int, tile: int, precision: str) -> dict:
    """Predict one ``size`` x ``size`` image in this process and report memory and time."""
    from unetkit.cli.cpu import reuse_freed_memory

    reuse_freed_memory()  # as the CLI runs (glibc keeps freed blocks in the heap)
    import torch

    from unetkit.config import Config, PredictConfig, UNetConfig
    from unetkit.inference.predictor import Predictor
    from unetkit.model.unet import UNet

    config = Config(
        model=UNetConfig(in_channels=3, classes=1, depth=4, base_width=8, norm="batch"),
        predict=PredictConfig(tile_size=tile, overlap=0.25, batch_size=4),
    )
    torch.manual_seed(0)
    predictor = Predictor(UNet(config.model), config, device="cpu", precision=precision)
    predictor.predict_image(np.zeros((tile + 1, tile + 1, 3), dtype=np.uint8))  # warm up allocators
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    baseline = current_rss()
    peak_was_reset = reset_peak_rss()
    started = time.perf_counter()
    probabilities = predictor.predict_image(image)
    labels = predictor.labels(probabilities)
    seconds = time.perf_counter() - started
    arrays = {  # the outputs; the raw image was allocated before the baseline
        "probabilities": probabilities.nbytes,
        "labels": labels.nbytes,
    }
    growth = peak_rss() - baseline
    return {
        "size": size,
        "seconds": round(seconds, 1),
        "megapixels_per_second": round(size * size / 1e6 / seconds, 2),
        "raw_image_mib": round(image.nbytes / MIB, 1),
        "peak_growth_mib": round(growth / MIB, 1),
        "arrays_mib": {name: round(value / MIB, 1) for name, value in arrays.items()},
        "beyond_arrays_mib": round((growth - sum(arrays.values())) / MIB, 1),
        "peak_reset": peak_was_reset,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 6000])
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--precision", default="32", choices=typing.get_args(Precision), help="(default 32: float32)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)  # one measurement, in this process
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.tile, args.precision)))
        return
    results = []
    for size in args.sizes:
        command = [sys.executable, __file__, "--child", str(size), "--tile", str(args.tile), "--precision", args.precision]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(output.strip().splitlines()[-1]))
        print(json.dumps(results[-1]))
    first, last = results[0], results[-1]
    print(
        f"peak growth {first['size']} px: {first['peak_growth_mib']} MiB, {last['size']} px: "
        f"{last['peak_growth_mib']} MiB; beyond the output arrays: {first['beyond_arrays_mib']} -> "
        f"{last['beyond_arrays_mib']} MiB"
    )


if __name__ == "__main__":
    main()
