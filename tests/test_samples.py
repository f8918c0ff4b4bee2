"""The photos shipped in ``exporters/data/photos`` are scikit-image's, pixel for pixel."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from mge_harness.exporters.errors import HarnessError
from mge_harness.exporters.samples import SAMPLE_FILES, sample_photo
from tests.hardening_models import child_env


@pytest.mark.parametrize("name", sorted(SAMPLE_FILES))
def test_a_shipped_photo_is_scikit_images(name):
    data = pytest.importorskip("skimage.data")
    expected = getattr(data, name)()
    if expected.ndim == 3:
        expected = expected[:, :, ::-1]  # scikit-image gives RGB; the harness BGR
    photo = sample_photo(name)
    assert photo.dtype == np.uint8 and not photo.flags.writeable
    np.testing.assert_array_equal(photo, expected)


def test_decoding_every_photo_is_silent():
    """No libpng 'iCCP: known incorrect sRGB profile' chatter on stderr."""
    code = "from exporters.samples import SAMPLE_FILES, sample_photo as s; [s(n) for n in SAMPLE_FILES]"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=child_env())  # fmt: skip
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_an_unknown_photo_is_one_line():
    with pytest.raises(HarnessError, match=r"unknown sample photo 'moped'; shipped photos: "):
        sample_photo("moped")
