"""Hypothesis strategies for raw uint8 BGR images, as serving code receives them from cv2.imread.

Small keyword-only factories that validate their arguments when called (``InvalidArgument``),
not when drawn. Content is cheap to make: Hypothesis draws a shape, a content family and a seed,
and numpy renders the pixels from that seed, so shrinking still works on size, family and seed.
The ``"sparse"`` family is the exception: a flat background with a few pixels chosen by
Hypothesis itself (``arrays(..., fill=...)``), which shrinks pixel by pixel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.extra.numpy import arrays

#: Colour photos shipped with the harness (``exporters.samples``), uint8 BGR.
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")

#: Largest side drawn by default: at least 1024, as large camera frames are common input.
MAX_SIDE = 1024


def _flat(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """All 0 or all 255: resizing must keep a flat image flat, at both ends of the range."""
    return np.full((h, w, 3), rng.choice((0, 255)), np.uint8)


def _gradient(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth ramp in a random direction between two random colours."""
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    t = xs * np.cos(angle) + ys * np.sin(angle)
    t = (t - t.min()) / max(float(np.ptp(t)), 1.0)
    start, end = rng.integers(0, 256, (2, 3)).astype(np.float32)
    return np.rint(start + (end - start) * t[..., None]).astype(np.uint8)


def _checkerboard(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Black/white-per-channel squares of a random size: the worst case for interpolation."""
    cell = int(rng.integers(1, max(2, min(h, w) // 2 + 1)))
    colour = rng.choice((0, 255), 3).astype(np.uint8)
    parity = ((np.arange(h)[:, None] // cell + np.arange(w)[None, :] // cell) % 2).astype(bool)
    return np.where(parity[..., None], colour, 255 - colour).astype(np.uint8)


def _noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Uniform noise over 0..255: every pixel independent."""
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _saturated(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Noise with one or more channels pinned at 0 or 255 (clipped highlights, pure colours)."""
    image = _noise(rng, h, w)
    channels = rng.permutation(3)[: int(rng.integers(1, 4))]
    image[..., channels] = rng.choice((0, 255), len(channels)).astype(np.uint8)
    return image


def _photo(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random crop of a bundled photo, scaled to (h, w) with area averaging."""
    import cv2

    photo = _load_photo(PHOTOS[int(rng.integers(len(PHOTOS)))])
    ph, pw = photo.shape[:2]
    ch, cw = int(rng.integers(1, ph + 1)), int(rng.integers(1, pw + 1))
    top, left = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
    crop = photo[top : top + ch, left : left + cw]
    return cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA).reshape(h, w, 3)


def _load_photo(name: str) -> np.ndarray:
    from mge_harness.exporters.samples import sample_photo

    return sample_photo(name)


_RENDERERS: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "flat": _flat,
    "gradient": _gradient,
    "checkerboard": _checkerboard,
    "saturated": _saturated,
    "noise": _noise,
    "photo": _photo,
}

#: Content families, simplest first (Hypothesis shrinks towards the front).
FAMILIES = (*_RENDERERS, "sparse")


def image_shapes(
    *, min_side: int = 1, max_side: int = MAX_SIDE, target: tuple[int, int] | None = None
) -> st.SearchStrategy[tuple[int, int]]:
    """(height, width) pairs with sides in ``[min_side, max_side]``.

    Mixes free shapes, extreme aspect ratios (one side ``min_side``: 1xN and Nx1 strips) and,
    when given, exactly ``target`` (the model's input size, where resizing is the identity).
    Defaults to sides 1 to 1024 and no target.
    """
    _check_sides(min_side, max_side)
    side = st.integers(min_side, max_side)
    options = [
        st.tuples(side, side),
        st.tuples(st.just(min_side), side),
        st.tuples(side, st.just(min_side)),
    ]
    if target is not None:
        _check(
            isinstance(target, (tuple, list))
            and len(target) == 2
            and all(_is_int(v) and min_side <= v <= max_side for v in target),
            f"target={target!r} must be (height, width) with sides in [{min_side}, {max_side}]",
        )
        options.append(st.just((int(target[0]), int(target[1]))))
    return st.one_of(options)


def images(
    *,
    min_side: int = 1,
    max_side: int = MAX_SIDE,
    target: tuple[int, int] | None = None,
    families: Sequence[str] = FAMILIES,
) -> st.SearchStrategy[np.ndarray]:
    """uint8 BGR images of shape (H, W, 3); sizes as :func:`image_shapes`, content from
    ``families`` (a subset of ``FAMILIES``; defaults to all of them)."""
    shapes = image_shapes(min_side=min_side, max_side=max_side, target=target)
    families = _check_families(families)
    return shapes.flatmap(lambda shape: _pixels(shape, families))


def image_batches(
    *,
    min_batch: int = 1,
    max_batch: int = 4,
    min_side: int = 1,
    max_side: int = MAX_SIDE,
    target: tuple[int, int] | None = None,
    families: Sequence[str] = FAMILIES,
    fixed: tuple[int, int] | None = None,
) -> st.SearchStrategy[np.ndarray]:
    """Batches (N, H, W, 3) of same-sized uint8 BGR images, N in ``[min_batch, max_batch]``
    (defaults to 1 to 4); each image draws its own content family. ``fixed`` (height, width)
    gives every batch that size (a graph that takes no other)."""
    _check(_is_int(min_batch) and min_batch >= 1, f"min_batch={min_batch!r} must be an int >= 1")
    _check(
        _is_int(max_batch) and max_batch >= min_batch,
        f"max_batch={max_batch!r} must be an int >= min_batch={min_batch!r}",
    )
    if fixed is not None:
        shapes = st.just((int(fixed[0]), int(fixed[1])))
    else:
        shapes = image_shapes(min_side=min_side, max_side=max_side, target=target)
    families = _check_families(families)
    return _batches(st.integers(min_batch, max_batch), shapes, families)


@st.composite
def _batches(draw, sizes, shapes, families: tuple[str, ...]) -> np.ndarray:
    count, shape = draw(sizes), draw(shapes)
    return np.stack([draw(_pixels(shape, families)) for _ in range(count)])


@st.composite
def _pixels(draw, shape: tuple[int, int], families: tuple[str, ...]) -> np.ndarray:
    family = draw(st.sampled_from(families))
    if family == "sparse":
        pixels = st.integers(0, 255)
        return draw(arrays(np.uint8, (*shape, 3), elements=pixels, fill=pixels))
    seed = draw(st.integers(0, 2**32 - 1))
    return _RENDERERS[family](np.random.default_rng(seed), *shape)


def _check_families(families: Sequence[str]) -> tuple[str, ...]:
    families = tuple(families) if not isinstance(families, str) else (families,)
    unknown = [f for f in families if f not in FAMILIES]
    _check(
        bool(families) and not unknown,
        f"families={families!r} must be a non-empty subset of {FAMILIES}",
    )
    return families


def _check_sides(min_side: int, max_side: int) -> None:
    _check(_is_int(min_side) and min_side >= 1, f"min_side={min_side!r} must be an int >= 1")
    _check(
        _is_int(max_side) and max_side >= min_side,
        f"max_side={max_side!r} must be an int >= min_side={min_side!r}",
    )


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidArgument(message)
