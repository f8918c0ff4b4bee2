"""Image preprocessing: the spec, the host (OpenCV) pipeline, and the in-graph (fused) pipelines.

Every pipeline maps raw uint8 BGR images (N, H, W, 3) to float32 NCHW at ``spec.size``:
resize with bilinear sampling on half-pixel centres (what ``cv2.resize(..., INTER_LINEAR)`` does),
channel order ``spec.color``, then ``(x - mean) / std``.

The fused graph resizes in float; OpenCV resizes the uint8 image with
11-bit fixed-point weights and rounds. The two therefore differ by at most one grey level on some
pixels (measured on 11-13 % of pixels), which is the floor of fused-vs-external agreement.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mge_harness.exporters.errors import HarnessError
from mge_harness.exporters.schema import check_keys

COLORS = ("bgr", "rgb")
INTERPOLATIONS = ("linear",)

#: MegEngine Models' ImageNet statistics, in BGR order (what its classifiers were trained on).
IMAGENET_BGR_MEAN = (103.53, 116.28, 123.675)
IMAGENET_BGR_STD = (57.375, 57.12, 58.395)


@dataclass(frozen=True)
class PreprocessSpec:
    """What the model expects: input size, channel order and normalisation.

    ``size`` is (height, width). ``mean`` and ``std`` are in the channel order the model sees,
    which is ``color`` ("bgr" or "rgb"); images always arrive BGR, as ``cv2.imread`` gives them.
    """

    size: tuple[int, int]
    mean: tuple[float, float, float] = IMAGENET_BGR_MEAN
    std: tuple[float, float, float] = IMAGENET_BGR_STD
    color: str = "bgr"
    interpolation: str = "linear"

    def __post_init__(self):
        _check_spec(self, "preprocess")

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": list(self.size),
            "mean": list(self.mean),
            "std": list(self.std),
            "color": self.color,
            "interpolation": self.interpolation,
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "manifest.json") -> PreprocessSpec:
        """Builds a spec from a manifest's ``preprocess`` object, naming ``source`` on error."""
        if not isinstance(data, Mapping):
            raise HarnessError(f"{source}: 'preprocess' must be an object, got {data!r}")
        check_keys(data, "preprocess", f"{source}: preprocess")
        missing = [k for k in ("size", "mean", "std", "color") if k not in data]
        if missing:
            raise HarnessError(
                f"{source}: 'preprocess' misses {', '.join(repr(k) for k in missing)}; expected "
                "size [height, width], mean and std (3 numbers each, in the model's channel "
                "order) and color ('bgr' or 'rgb')"
            )
        size = _numbers(data["size"], 2, f"{source}: 'preprocess.size'", "[height, width]")
        if any(v != int(v) or v < 1 for v in size):
            raise HarnessError(
                f"{source}: 'preprocess.size' must be 2 positive integers, got {data['size']!r}"
            )
        what = "3 numbers in the model's channel order"
        return cls(
            size=(int(size[0]), int(size[1])),
            mean=_numbers(data["mean"], 3, f"{source}: 'preprocess.mean'", what),
            std=_numbers(data["std"], 3, f"{source}: 'preprocess.std'", what),
            color=data["color"],
            interpolation=data.get("interpolation", "linear"),
        )


def _numbers(value: Any, count: int, name: str, what: str) -> tuple[float, ...]:
    ok = isinstance(value, (list, tuple)) and len(value) == count
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if not ok or not all(math.isfinite(v) for v in value):
        raise HarnessError(f"{name} must be {what}, got {value!r}")
    return tuple(float(v) for v in value)


def _check_spec(spec: PreprocessSpec, name: str) -> None:
    if spec.color not in COLORS:
        raise HarnessError(f"{name}.color must be one of {COLORS}, got {spec.color!r}")
    if spec.interpolation not in INTERPOLATIONS:
        raise HarnessError(
            f"{name}.interpolation must be one of {INTERPOLATIONS}, got {spec.interpolation!r}"
        )
    if any(s <= 0 for s in spec.std):
        raise HarnessError(f"{name}.std must be positive, got {list(spec.std)}")


def check_images(images: Any, name: str = "images") -> np.ndarray:
    """Returns ``images`` as a uint8 (N, H, W, 3) array, or raises HarnessError saying why not."""
    if not isinstance(images, np.ndarray):
        raise HarnessError(f"{name}: expected a numpy array, got {type(images).__name__}")
    if images.dtype != np.uint8:
        raise HarnessError(f"{name}: expected uint8 BGR pixels, got dtype {images.dtype}")
    if images.ndim != 4 or images.shape[-1] != 3 or 0 in images.shape:
        raise HarnessError(
            f"{name}: expected a non-empty uint8 BGR batch of shape (N, H, W, 3), "
            f"got shape {images.shape}"
        )
    return images


def reference_preprocess(
    images: np.ndarray, spec: PreprocessSpec, *, exact: bool = False
) -> np.ndarray:
    """The external OpenCV pipeline: uint8 BGR (N, H, W, 3) -> float32 NCHW at ``spec.size``.

    ``cv2.resize(INTER_LINEAR)`` on the uint8 image (as serving code does), float32, channel
    flip when the model wants RGB, ``(x - mean) / std``, transpose to NCHW. With ``exact``, the
    image is resized as float32 instead: the exact bilinear values, without the uint8 path's
    fixed-point weights and rounding (up to 0.76 grey levels apart on photos). Defaults to False.
    """
    import cv2

    images = check_images(images)
    height, width = spec.size
    resized = [
        cv2.resize(
            image.astype(np.float32) if exact else image,
            (width, height),
            interpolation=cv2.INTER_LINEAR,
        )
        for image in images
    ]
    return normalize_pixels(np.stack(resized).reshape(len(images), height, width, 3), spec)


def normalize_pixels(pixels: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Host normalisation of resized BGR pixels (N, H, W, 3), any dtype: float32, channel
    flip when the model wants RGB, ``(x - mean) / std``, NCHW."""
    pixels = pixels.astype(np.float32)
    if spec.color == "rgb":
        pixels = pixels[..., ::-1]
    mean = np.asarray(spec.mean, np.float32)
    std = np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(((pixels - mean) / std).transpose(0, 3, 1, 2))


def fused_preprocess(data, spec: PreprocessSpec):
    """In-graph pipeline on a MegEngine tensor: uint8 BGR NHWC of any size -> float32 NCHW.

    The resize is separable bilinear sampling on half-pixel centres, written with gathers so
    that the sampling positions are exact: it matches float ``cv2.resize`` to 6e-5 grey levels
    at every size (measured, 1x1 to 2000x2000). MegEngine's ``Resize`` and ``warp_perspective``
    round the source coordinate to float32 first, which costs up to 0.036 levels at 2000 px (see
    ``fused_fast_preprocess``); NHWC ``warp_perspective`` copies OpenCV's 1/32-pixel coordinate
    quantisation and misses by up to 6 levels. The price: the gathers are slow in MegEngine 1.13
    (about 8 ms for a 480x640 image on one x86 core, against 0.75 ms for OpenCV on the host).
    """
    import megengine.functional as F

    height, width = spec.size
    # Rows first: gathering whole rows of the uint8 image is the cheapest first step.
    top, bottom, fy = _sampling(data.shape[1], height)
    fy = fy.reshape(1, height, 1, 1)
    x = data[:, top].astype("float32") * (1 - fy) + data[:, bottom].astype("float32") * fy
    x = F.transpose(x, (0, 3, 1, 2))
    left, right, fx = _sampling(data.shape[2], width)
    x = x[:, :, :, left] * (1 - fx) + x[:, :, :, right] * fx
    return _normalize_nchw(x, spec)


def _sampling(in_len, out_len: int):
    """Source indices and weights of bilinear sampling along one axis, as graph tensors.

    Output pixel ``d`` samples source position ``(d + 0.5) * in_len / out_len - 0.5``. Computed
    as the integer ``(2d + 1) * in_len - out_len`` over ``2 * out_len`` so that the fraction is
    exact; positions outside the image clamp to the edge, as OpenCV's replicate border does.
    """
    import megengine as mge
    import megengine.functional as F

    if isinstance(in_len, mge.Tensor):
        n = in_len.astype("int32")
    else:  # eager mode gives plain ints
        n = mge.tensor(int(in_len), dtype="int32")
    twice = 2 * out_len
    numerator = (2 * F.arange(out_len, dtype="int32") + 1) * n - out_len
    start = F.floor_div(numerator, twice)
    frac = (numerator - start * twice).astype("float32") / twice
    frac = F.where(start < 0, F.zeros_like(frac), frac)
    last = n - 1
    first = F.minimum(F.maximum(start, 0), last)
    second = F.minimum(F.maximum(start + 1, 0), last)
    return first, second, frac


def fused_fast_preprocess(data, spec: PreprocessSpec):
    """In-graph pipeline with MegEngine's ``Resize`` op: 14x faster, less exact at large sizes.

    ``Resize`` (NCHW, bilinear, ``align_corners=False``) samples on half-pixel centres like
    ``cv2.resize`` but computes source coordinates in float32, so its error grows with the input
    size: against float ``cv2.resize`` it is within 0.01 grey levels up to about 640 px and
    0.036 at 2000 px (measured). At 480x640 it costs 0.56 ms against 8 ms for the exact gathers.
    """
    import megengine.functional as F

    x = F.transpose(data.astype("float32"), (0, 3, 1, 2))
    x = F.vision.interpolate(x, size=spec.size, mode="bilinear", align_corners=False)
    return _normalize_nchw(x, spec)


def identity_warp_preprocess(data, spec: PreprocessSpec):
    """The widely copied recipe (MegFlow ``dump_resnet.py``): it crops instead of resizing.

    ``warp_perspective`` with an identity matrix maps output pixel (x, y) to input pixel (x, y),
    so the result is the top-left ``spec.size`` window (replicate-padded when the image is
    smaller). Kept as a variant so that the gate proves it catches it.
    """
    import megengine.functional as F

    x = data.astype("float32")
    eye = F.eye(3, dtype="float32").reshape(1, 3, 3)
    # data.shape[0] is a tensor when traced (the dump keeps any batch), an int when eager.
    matrix = F.broadcast_to(eye, (data.shape[0], 3, 3))
    x = F.vision.warp_perspective(x, matrix, spec.size, format="NHWC")
    return _normalize_nchw(F.transpose(x, (0, 3, 1, 2)), spec)


def _normalize_nchw(x, spec: PreprocessSpec):
    import megengine as mge

    if spec.color == "rgb":
        x = x[:, [2, 1, 0]]
    mean = mge.tensor(np.asarray(spec.mean, np.float32).reshape(1, 3, 1, 1))
    std = mge.tensor(np.asarray(spec.std, np.float32).reshape(1, 3, 1, 1))
    return (x - mean) / std


def preprocessing_recipe(preprocessing: str):
    """The in-graph preprocessing function of a raw-input preprocessing kind."""
    recipes = {
        "fused": fused_preprocess,
        "fused-fast": fused_fast_preprocess,
        "identity-warp": identity_warp_preprocess,
    }
    try:
        return recipes[preprocessing]
    except KeyError:
        raise HarnessError(
            f"no in-graph recipe for preprocessing {preprocessing!r}; known: {', '.join(recipes)}"
        ) from None
