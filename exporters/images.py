"""Images from files or numpy arrays, as the uint8 BGR (H, W, 3) pixels every runner takes.

The rules, applied the same way to decoded files and to arrays passed in Python:

* uint8 pixels are used as they are; uint16 (16-bit PNG/TIFF) keep their high byte (``>> 8``);
  any other dtype (float, int64, bool ...) is refused, because its value range is unknown;
* grey images, (H, W) or (H, W, 1), are repeated into three channels (``COLOR_GRAY2BGR``):
  grey photos are classified, as colour models see them;
* 4-channel BGRA drops its alpha channel (``COLOR_BGRA2BGR``), without compositing;
* empty images and other shapes are refused.

Files are decoded with ``cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR`` rather than
``IMREAD_UNCHANGED``: both keep 16-bit depth and grey, but only the former applies a JPEG's EXIF
orientation as plain ``cv2.imread`` does (phone photos would otherwise be classified sideways).
PNG alpha is then dropped by the decoder itself; formats that still decode to 4 channels go
through the BGRA rule above.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from exporters.errors import HarnessError

_EXPECTED_SHAPE = "expected (H, W) grey, (H, W, 3) BGR or (H, W, 4) BGRA"


def check_pixels(image: Any, source: str) -> None:
    """Raises HarnessError unless ``image`` is a non-empty uint8/uint16 image array."""
    if not isinstance(image, np.ndarray):
        raise HarnessError(f"{source}: expected a numpy array, got {type(image).__name__}")
    if image.dtype not in (np.uint8, np.uint16):
        raise HarnessError(
            f"{source}: dtype {image.dtype} is not supported; expected uint8 BGR pixels "
            "(0-255) or uint16, e.g. (x * 255).round().astype(np.uint8) for floats in 0-1"
        )
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise HarnessError(f"{source}: shape {image.shape} is not an image; {_EXPECTED_SHAPE}")
    if image.size == 0:
        raise HarnessError(f"{source}: empty image of shape {image.shape}")


def to_bgr8(image: Any, source: str) -> np.ndarray:
    """``image`` as contiguous uint8 BGR (H, W, 3) by the module's rules; HarnessError if it
    cannot be. ``source`` names the image in error messages."""
    import cv2

    check_pixels(image, source)
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    image = np.ascontiguousarray(image)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def check_image_file(path: Path) -> None:
    """The checks that need no decoding: the file exists and is a non-empty regular file."""
    if not path.exists():
        raise HarnessError(f"{path}: file does not exist")
    if not path.is_file():
        raise HarnessError(f"{path}: not a file; expected an image file")
    if path.stat().st_size == 0:
        raise HarnessError(f"{path}: empty file; expected an image")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decodes an image file into uint8 BGR (H, W, 3) by the module's rules."""
    import cv2

    path = Path(path)
    check_image_file(path)
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as err:
        raise HarnessError(f"{path}: cannot read ({err.strerror or err})") from None
    # imdecode of the bytes instead of imread: no OpenCV warning on stderr, any path encoding.
    image = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    if image is None:
        raise HarnessError(f"{path}: not an image OpenCV can decode")
    return to_bgr8(image, str(path))


@dataclass(frozen=True)
class ImageInput:
    """One image of a call: a file read when needed, or an array given in Python."""

    source: str
    path: Path | None = None
    array: np.ndarray | None = field(default=None, compare=False, repr=False)

    def load(self) -> np.ndarray:
        """The uint8 BGR (H, W, 3) pixels (decoded now for a file)."""
        if self.path is not None:
            return read_image(self.path)
        return to_bgr8(self.array, self.source)


def image_inputs(images: Any) -> list[ImageInput]:
    """Names and checks the images of one call, without decoding any file.

    ``images``: a path (str or PathLike), one array, an (N, H, W, C) array batch, or a list
    mixing paths and arrays. Paths are named as given; arrays ``array[i]``, ``i`` being the
    position in the list or the batch (``array[i][j]`` for image ``j`` of a batch inside a
    list). Missing files and bad arrays raise HarnessError here, before anything is classified.
    """
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return [_array_input(image, f"array[{i}]") for i, image in enumerate(images)]
    listed = isinstance(images, (list, tuple))
    inputs = []
    for i, item in enumerate(images if listed else [images]):
        if isinstance(item, (str, os.PathLike)):
            check_image_file(Path(item))
            inputs.append(ImageInput(str(item), path=Path(item)))
        elif isinstance(item, np.ndarray) and item.ndim == 4:
            inputs.extend(_array_input(image, f"array[{i}][{j}]") for j, image in enumerate(item))
        elif isinstance(item, np.ndarray):
            inputs.append(_array_input(item, f"array[{i}]"))
        else:
            raise HarnessError(
                f"{f'images[{i}]' if listed else 'images'}: expected an image file path or a "
                f"numpy array, got {type(item).__name__}"
            )
    return inputs


def _array_input(array: np.ndarray, name: str) -> ImageInput:
    check_pixels(array, name)
    return ImageInput(name, array=array)
