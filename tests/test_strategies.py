"""Unit tests for the image strategies (equivalence.strategies)."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
from hypothesis import find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from mge_harness.equivalence import strategies
from mge_harness.equivalence.strategies import FAMILIES, image_batches, image_shapes, images


@pytest.mark.parametrize(
    ("factory", "kwargs"),
    [
        (image_shapes, {"min_side": 0}),
        (image_shapes, {"min_side": 1.5}),
        (image_shapes, {"min_side": 8, "max_side": 4}),
        (image_shapes, {"target": (224,)}),
        (image_shapes, {"target": (2000, 224)}),
        (images, {"families": []}),
        (images, {"families": ["noise", "plasma"]}),
        (image_batches, {"min_batch": 0}),
        (image_batches, {"min_batch": 3, "max_batch": 2}),
        (image_batches, {"max_side": 0}),
    ],
)
def test_factories_validate_arguments_when_built(factory, kwargs):
    with pytest.raises(InvalidArgument):
        factory(**kwargs)


@given(images(max_side=48))
def test_images_are_uint8_bgr_within_bounds(image):
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert 1 <= image.shape[0] <= 48 and 1 <= image.shape[1] <= 48


@given(image_batches(min_batch=2, max_batch=3, min_side=5, max_side=40))
def test_batches_stack_same_sized_images(batch):
    assert batch.dtype == np.uint8 and batch.ndim == 4 and batch.shape[3] == 3
    assert 2 <= batch.shape[0] <= 3
    assert 5 <= batch.shape[1] <= 40 and 5 <= batch.shape[2] <= 40


@pytest.mark.parametrize(
    ("description", "condition"),
    [
        ("a 1xN strip", lambda s: s[0] == 1 and s[1] >= 100),
        ("an Nx1 strip", lambda s: s[1] == 1 and s[0] >= 100),
        ("exactly the target", lambda s: s == (224, 200)),
        ("a side of at least 1000", lambda s: max(s) >= 1000),
        ("a large square-ish frame", lambda s: min(s) >= 500),
    ],
)
def test_shapes_reach_the_cases_that_matter(description, condition):
    assert condition(find(image_shapes(target=(224, 200)), condition, settings=_search()))


@pytest.mark.parametrize("family", FAMILIES)
@given(data=st.data())
def test_every_family_renders_any_shape(family, data):
    image = data.draw(images(max_side=24, families=[family]))
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


def test_flat_family_covers_both_ends_of_the_range():
    for value in (0, 255):
        found = find(images(max_side=16, families="flat"), lambda im, v=value: im[0, 0, 0] == v)
        assert (found == value).all()


def test_checkerboards_alternate_two_complementary_colours():
    board = find(images(min_side=4, max_side=16, families="checkerboard"), lambda _: True)
    colours = np.unique(board.reshape(-1, 3), axis=0).astype(int)
    assert len(colours) == 2 and (colours[0] + colours[1] == 255).all()
    assert set(np.unique(colours)) <= {0, 255}


@given(images(min_side=2, max_side=32, families="saturated"))
def test_saturated_images_pin_at_least_one_channel(image):
    pinned = [c for c in range(3) if len(np.unique(image[..., c])) == 1]
    assert pinned and all(image[0, 0, c] in (0, 255) for c in pinned)


def test_sparse_family_shrinks_to_a_flat_image_with_one_odd_pixel():
    def has_odd_pixel(image):
        return image.size > 3 and len(np.unique(image)) > 1

    found = find(images(max_side=32, families="sparse"), has_odd_pixel)
    values, counts = np.unique(found, return_counts=True)
    assert len(values) == 2 and counts.min() == 1


def test_photos_are_flipped_to_bgr():
    chelsea = strategies._load_photo("chelsea")
    np.testing.assert_array_equal(chelsea, skimage.data.chelsea()[:, :, ::-1])


def test_photo_family_reaches_real_photo_content():
    # A smooth photo crop has many distinct colours but little pixel-to-pixel change, unlike noise.
    def looks_like_a_photo(image):
        if min(image.shape[:2]) < 32:
            return False
        return np.abs(np.diff(image.astype(int), axis=1)).mean() < 20

    photo = find(images(max_side=64, families="photo"), looks_like_a_photo, settings=_search())
    assert len(np.unique(photo.reshape(-1, 3), axis=0)) > 16


def _search():
    return settings(max_examples=2000, database=None)
