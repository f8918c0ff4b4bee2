"""Benchmark inputs: realistic uint8 BGR camera frames, built outside every timed region.

Frames are scikit-image photos resized with OpenCV to 480x640 plus a little noise, so the
resize inside fused graphs and in the host pipeline does the work it does on real images.
"""

from __future__ import annotations

import functools

import numpy as np

#: (height, width) of the raw frames fed to e2e benchmarks and raw-input variants.
IMAGE_SIZE = (480, 640)

#: scikit-image photos (bundled with the package, no download) cycled through a batch.
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


@functools.cache
def _photo_bgr(name: str, size: tuple[int, int]) -> np.ndarray:
    import cv2
    import skimage.data

    rgb = getattr(skimage.data, name)()
    resized = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(resized[:, :, ::-1])


def image_batch(batch: int, size: tuple[int, int] = IMAGE_SIZE, seed: int = 0) -> np.ndarray:
    """``batch`` uint8 BGR NHWC frames of ``size`` (height, width). Defaults to 480x640, seed 0."""
    rng = np.random.default_rng(seed)
    frames = []
    for index in range(batch):
        photo = _photo_bgr(PHOTOS[index % len(PHOTOS)], tuple(size)).astype(np.int16)
        noisy = photo + rng.integers(-8, 9, size=photo.shape, dtype=np.int16)
        frames.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return np.stack(frames)


def frame_size(entry) -> tuple[int, int]:
    """The frame size a variant is fed: ``IMAGE_SIZE``, or the only size its ``input.shape``
    takes (a raw-input graph with a fixed height and width)."""
    return entry.fixed_size or IMAGE_SIZE


def model_feed(entry, manifest, images: np.ndarray) -> dict[str, np.ndarray]:
    """What ``entry``'s graph takes for ``images``: the frames themselves for raw-input variants,
    else the OpenCV reference preprocessing of them (float32 NCHW), keyed by the input name."""
    if entry.is_raw_input:
        return {entry.input.name: images}
    from mge_harness.exporters.preprocess import reference_preprocess

    return {entry.input.name: reference_preprocess(images, manifest.preprocess)}
