"""Made-up fingerprints for the rule tests: a plain 8-bit grey dataset, changed field by field."""

from __future__ import annotations

import dataclasses
from typing import Any

from unetkit.planning.fingerprint import Fingerprint, ObjectStats


def fingerprint(objects: dict[str, Any] | None = None, **changes: Any) -> Fingerprint:
    base = Fingerprint(
        images=40, train_images=32, median_size=(512, 512), min_size=(512, 512), max_size=(512, 512),
        channels=1, bit_depth=8, jpeg_share=0.0, percentiles=[[0.1, 0.5, 0.9]], mean=[0.5], std=[0.2],
        image_std=0.2, mean_spread=0.02, coloured=0.0, hue_range=0.0, dark=0.0, classes=2, foreground=[0.8, 0.2],
        objects=ObjectStats("components", per_image=20, median_area=300, median_diameter=20,
                            median_thickness=12, touching=0.0),
        sampled=16,
    )  # fmt: skip
    if objects:
        changes["objects"] = dataclasses.replace(base.objects, **objects)
    return dataclasses.replace(base, **changes)
