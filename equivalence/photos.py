"""The gate's fixed set of real photos: the harness's shipped photos, as uint8 BGR.

Hypothesis searches for the inputs where variants disagree most; the photo check asks the
question a user asks first: on ordinary photos, does every variant give the reference
pipeline's answer? The set mixes native sizes (none of them the model's input size, so the
resize always runs) with fixed crops and scales: a square crop, a wide strip, a downscale and an
upscale (an image smaller than the model's input). Grey photos are repeated into three channels
(``COLOR_GRAY2BGR``), as the classifier does with grey files. All of them ship inside the
harness (``exporters.samples``: scikit-image's public-domain and CC0 sample photos); nothing is
downloaded and scikit-image is not needed.

The photos are decoded once per process (``photo_set``) and grouped by size (``photo_groups``),
so each group runs as one batch.

The photo check passes when the numeric comparison with the reference pipeline passes (the
closer of its two correct forms, see ``equivalence.checks.Check.either_resize``) and, on every
photo, the variant keeps the reference's top-1 class (``same_top1``). Except on ties: the
reference resizes the uint8 image as serving code does, with OpenCV's fixed-point weights and
rounding, while the fused graphs compute the exact bilinear values; both are correct, they
differ by up to 0.76 grey levels, and where the two give different top-1 classes (a near-tie
of the model's two best classes) either answer is right.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cache

import numpy as np

from mge_harness.equivalence.compare import CompareResult


@dataclass(frozen=True)
class PhotoSpec:
    """One photo of the set: a shipped photo (``exporters.samples``), optionally cropped and
    then scaled.

    ``crop`` is ``(top, left, height, width)`` in the source image; ``scale`` the final
    ``(height, width)``, resized with ``cv2.INTER_AREA`` (down) or ``INTER_CUBIC`` (up), so that
    the photo's pixels do not come from the bilinear resize under test.
    """

    source: str
    crop: tuple[int, int, int, int] | None = None
    scale: tuple[int, int] | None = None

    @property
    def name(self) -> str:
        """A readable, stable name: ``rocket``, ``chelsea.crop-300x300``, ``rocket.scale-107x160``."""
        name = self.source
        if self.crop:
            name += f".crop-{self.crop[2]}x{self.crop[3]}"
        if self.scale:
            name += f".scale-{self.scale[0]}x{self.scale[1]}"
        return name


#: The photo set, in report order. Native sizes from about 300x400 to 872x1000 (astronaut,
#: camera and immunohistochemistry share 512x512 and run as one batch), plus crops and scales.
PHOTO_SPECS = (
    PhotoSpec("chelsea"),
    PhotoSpec("coffee"),
    PhotoSpec("astronaut"),
    PhotoSpec("rocket"),
    PhotoSpec("camera"),
    PhotoSpec("immunohistochemistry"),
    PhotoSpec("clock"),
    PhotoSpec("coins"),
    PhotoSpec("hubble_deep_field"),
    PhotoSpec("chelsea", crop=(0, 60, 300, 300)),
    PhotoSpec("hubble_deep_field", crop=(300, 0, 200, 1000)),
    PhotoSpec("coffee", scale=(200, 300)),
    PhotoSpec("rocket", scale=(107, 160)),
    PhotoSpec("astronaut", crop=(0, 100, 240, 240), scale=(480, 480)),
)


@dataclass(frozen=True)
class Photo:
    """A photo of the set: its name and uint8 BGR pixels (H, W, 3)."""

    name: str
    image: np.ndarray = field(repr=False, compare=False)


@dataclass(frozen=True)
class PhotoGroup:
    """Same-sized photos, stacked into one uint8 BGR batch (N, H, W, 3)."""

    names: tuple[str, ...]
    images: np.ndarray = field(repr=False, compare=False)

    @property
    def label(self) -> str:
        height, width = self.images.shape[1:3]
        return f"{', '.join(self.names)} ({height}x{width})"


def load_photo(spec: PhotoSpec) -> Photo:
    """Decodes, crops and scales one photo; uint8 BGR."""
    import cv2

    from mge_harness.exporters.images import to_bgr8
    from mge_harness.exporters.samples import sample_photo

    image = to_bgr8(sample_photo(spec.source), spec.name)
    if spec.crop:
        top, left, height, width = spec.crop
        image = image[top : top + height, left : left + width]
    if spec.scale:
        height, width = spec.scale
        upscale = height * width > image.shape[0] * image.shape[1]
        interpolation = cv2.INTER_CUBIC if upscale else cv2.INTER_AREA
        image = cv2.resize(image, (width, height), interpolation=interpolation)
    return Photo(spec.name, np.ascontiguousarray(image))


@cache
def photo_set() -> tuple[Photo, ...]:
    """Every photo of ``PHOTO_SPECS``, decoded once per process."""
    return tuple(load_photo(spec) for spec in PHOTO_SPECS)


@cache
def photo_groups() -> tuple[PhotoGroup, ...]:
    """The photo set as same-sized batches, in order of each size's first photo."""
    by_size: dict[tuple[int, ...], list[Photo]] = {}
    for photo in photo_set():
        by_size.setdefault(photo.image.shape, []).append(photo)
    return tuple(
        PhotoGroup(tuple(p.name for p in photos), np.stack([p.image for p in photos]))
        for photos in by_size.values()
    )


#: The size every photo is scaled to for :func:`photo_batch` (``cv2.INTER_AREA``).
BATCH_SIZE = (320, 320)


@cache
def photo_batch() -> tuple[PhotoGroup, ...]:
    """The whole photo set as one batch, every photo scaled to ``BATCH_SIZE``: for rules about
    shares of images (the int8 check's top-1 / top-5 agreement), which need them all at once."""
    import cv2

    height, width = BATCH_SIZE
    images = [
        cv2.resize(p.image, (width, height), interpolation=cv2.INTER_AREA) for p in photo_set()
    ]
    return (PhotoGroup(tuple(p.name for p in photo_set()), np.stack(images)),)


def same_top1(
    result: CompareResult, ref: np.ndarray, out: np.ndarray, exact: np.ndarray
) -> CompareResult:
    """``result`` with the top-1 rule added: status ``mismatch`` when ``out`` (N, classes)
    changes the top-1 class of an image whose reference top-1 is decisive.

    Decisive: ``exact``, the reference model fed the exact (float) resize, has the same top-1 as
    ``ref``; otherwise the image is a tie and may go either way. ``detail`` names the images
    (batch rows) whose top-1 changed and the ties. Results that did not compare (shape, dtype,
    non-finite) are returned as they are.
    """
    if result.status in ("shape", "dtype", "nonfinite") or ref.ndim != 2:
        return result
    want, got, alternative = (values.argmax(axis=1) for values in (ref, out, exact))
    decisive = want == alternative
    changed = np.flatnonzero(decisive & (got != want))
    ties = np.flatnonzero(~decisive)
    notes = [result.detail] if result.detail else []
    if len(changed):
        rows = ", ".join(f"{i} ({want[i]} -> {got[i]})" for i in changed)
        notes.append(f"top-1 class changed on image {rows}")
    if len(ties):
        rows = ", ".join(f"{i} ({want[i]} or {alternative[i]})" for i in ties)
        notes.append(f"ties, where the uint8 and exact resizes disagree on top-1: image {rows}")
    status = "mismatch" if len(changed) else result.status
    return replace(result, status=status, detail="; ".join(notes))
