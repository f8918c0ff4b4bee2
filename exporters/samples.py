"""The real photos shipped with the harness (``exporters/data/photos``), decoded as uint8.

Nine of scikit-image's sample photos (``skimage.data``), copied from its 0.25 wheel so that
the gate's photo check, the Hypothesis photo strategies, the evidence pictures and the
benchmarks' frames need no scikit-image: every one is public domain or CC0 (sources and
licences in ``exporters/data/README.md``). ``sample_photo(name)`` is bit-identical to
``skimage.data.<name>()`` with colour photos in BGR order (tests/test_samples.py).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import numpy as np

from mge_harness.exporters.errors import HarnessError

#: Photo name (scikit-image's function name) -> file in ``exporters/data/photos``.
SAMPLE_FILES = {
    "astronaut": "astronaut.png",
    "camera": "camera.png",
    "chelsea": "chelsea.png",
    "clock": "clock_motion.png",
    "coffee": "coffee.png",
    "coins": "coins.png",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "immunohistochemistry": "ihc.png",
    "rocket": "rocket.jpg",
}


@cache
def _decoded(name: str) -> np.ndarray:
    import cv2

    if name not in SAMPLE_FILES:
        known = ", ".join(SAMPLE_FILES)
        raise HarnessError(f"unknown sample photo {name!r}; shipped photos: {known}")
    data = resources.files("mge_harness.exporters").joinpath("data", "photos", SAMPLE_FILES[name])
    buffer = np.frombuffer(data.read_bytes(), np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if image is None or image.dtype != np.uint8:
        raise HarnessError(f"{data}: not a uint8 image; reinstall the harness")
    image.setflags(write=False)
    return image


def sample_photo(name: str) -> np.ndarray:
    """The shipped photo ``name``: (H, W, 3) uint8 BGR for colour photos, (H, W) for grey ones
    (camera, clock, coins). Decoded once per process; a read-only array."""
    return _decoded(name)
