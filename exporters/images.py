"""Images from files or numpy arrays, as the uint8 BGR (H, W, 3) pixels every runner takes.

The rules, applied the same way to decoded files and to arrays passed in Python:

* uint8 pixels are used as they are; uint16 (16-bit PNG/TIFF) keep their high byte (``>> 8``);
  any other dtype (float, int64, bool ...) is refused, because its value range is unknown;
* grey images, (H, W) or (H, W, 1), are repeated into three channels (``COLOR_GRAY2BGR``):
  grey photos are classified, as colour models see them;
* 4-channel BGRA drops its alpha channel (``COLOR_BGRA2BGR``), without compositing;
* empty images and other shapes are refused;
* images larger than ``max_pixels`` (height x width; defaults to ``MAX_IMAGE_PIXELS``, 2**27,
  about 134 megapixels) are refused, PNG and JPEG files from their header before anything is
  decoded (other formats after decoding, within OpenCV's own limit of 2**30 pixels): a small
  file can hold a huge image, and a model's graph needs several copies of it.

Files are decoded with ``cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR`` rather than
``IMREAD_UNCHANGED``: both keep 16-bit depth and grey, but only the former applies a JPEG's EXIF
orientation as plain ``cv2.imread`` does (phone photos would otherwise be classified sideways).
PNG alpha is then dropped by the decoder itself; formats that still decode to 4 channels go
through the BGRA rule above. What the decoders print on stderr (libpng warnings, OpenCV log
lines) is captured: the one-line error of an undecodable file quotes it.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mge_harness.exporters.errors import HarnessError

_EXPECTED_SHAPE = "expected (H, W) grey, (H, W, 3) BGR or (H, W, 4) BGRA"

#: The largest image accepted, in pixels (height x width): 2**27, about 134 megapixels (e.g.
#: 16384x8192). A 10000x10000 photo (100 megapixels, 300 MB decoded) is classified with a peak
#: of about 1.1 GB.
MAX_IMAGE_PIXELS = 2**27


def check_size(height: int, width: int, source: str, max_pixels: int = MAX_IMAGE_PIXELS) -> None:
    """HarnessError when a ``height`` x ``width`` image exceeds ``max_pixels``."""
    if height * width > max_pixels:
        raise HarnessError(
            f"{source}: a {width}x{height} image ({height * width / 1e6:.3g} megapixels) exceeds "
            f"the limit of {max_pixels} pixels (max_pixels, --max-pixels); downscale it first"
        )


def check_pixels(image: Any, source: str, max_pixels: int = MAX_IMAGE_PIXELS) -> None:
    """Raises HarnessError unless ``image`` is a non-empty uint8/uint16 image array of at most
    ``max_pixels`` pixels."""
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
    check_size(image.shape[0], image.shape[1], source, max_pixels)


def to_bgr8(image: Any, source: str, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """``image`` as contiguous uint8 BGR (H, W, 3) by the module's rules; HarnessError if it
    cannot be. ``source`` names the image in error messages."""
    import cv2

    check_pixels(image, source, max_pixels)
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


def header_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """(height, width) from a PNG or JPEG header (read without decoding), None for other data."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return height, width
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF or 0xD0 <= marker <= 0xD8 or marker == 0x01:  # fill, no length
            i += 1 if marker == 0xFF else 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return height, width
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


#: OpenCV's log prefix, e.g. "[ WARN:0@0.024] global grfmt_png.cpp:678 read_from_io ".
_OPENCV_LOG = re.compile(r"^\[\s*\w+:\d+@[\d.]+\]\s+global\s+\S+\s+\S+\s+")


def _decoder_message(lines: list[str]) -> str:
    said = [_OPENCV_LOG.sub("", line).strip() for line in lines if line.strip()]
    return f" ({said[-1][:160]})" if said else ""


def read_image(path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decodes an image file into uint8 BGR (H, W, 3) by the module's rules."""
    import cv2

    from mge_harness.exporters.quiet import captured_stderr

    path = Path(path)
    check_image_file(path)
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as err:
        raise HarnessError(f"{path}: cannot read ({err.strerror or err})") from None
    size = header_size(memoryview(data))
    if size:
        check_size(*size, str(path), max_pixels)
    # imdecode of the bytes instead of imread: any path encoding. Decoder chatter is captured.
    with captured_stderr() as said:
        try:
            image = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
        except cv2.error as err:  # e.g. beyond OpenCV's own size limit
            image, said = None, [getattr(err, "err", "") or str(err)]
    if image is None:
        raise HarnessError(f"{path}: not an image OpenCV can decode{_decoder_message(said)}")
    return to_bgr8(image, str(path), max_pixels)


@dataclass(frozen=True)
class ImageInput:
    """One image of a call: a file read when needed, or an array given in Python."""

    source: str
    path: Path | None = None
    array: np.ndarray | None = field(default=None, compare=False, repr=False)

    def load(self, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
        """The uint8 BGR (H, W, 3) pixels (decoded now for a file)."""
        if self.path is not None:
            return read_image(self.path, max_pixels)
        return to_bgr8(self.array, self.source, max_pixels)


def image_inputs(images: Any, max_pixels: int = MAX_IMAGE_PIXELS) -> list[ImageInput]:
    """Names and checks the images of one call, without decoding any file.

    ``images``: a path (str or PathLike), one array, an (N, H, W, C) array batch, or a list
    mixing paths and arrays. Paths are named as given; arrays ``array[i]``, ``i`` being the
    position in the list or the batch (``array[i][j]`` for image ``j`` of a batch inside a
    list). Missing files and bad arrays (also those above ``max_pixels``) raise HarnessError
    here, before anything is classified.
    """
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return [_array_input(image, f"array[{i}]", max_pixels) for i, image in enumerate(images)]
    listed = isinstance(images, (list, tuple))
    inputs = []
    for i, item in enumerate(images if listed else [images]):
        if isinstance(item, (str, os.PathLike)):
            check_image_file(Path(item))
            inputs.append(ImageInput(str(item), path=Path(item)))
        elif isinstance(item, np.ndarray) and item.ndim == 4:
            inputs.extend(
                _array_input(image, f"array[{i}][{j}]", max_pixels) for j, image in enumerate(item)
            )
        elif isinstance(item, np.ndarray):
            inputs.append(_array_input(item, f"array[{i}]", max_pixels))
        else:
            raise HarnessError(
                f"{f'images[{i}]' if listed else 'images'}: expected an image file path or a "
                f"numpy array, got {type(item).__name__}"
            )
    return inputs


def _array_input(array: np.ndarray, name: str, max_pixels: int) -> ImageInput:
    check_pixels(array, name, max_pixels)
    return ImageInput(name, array=array)
