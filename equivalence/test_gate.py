"""The release gate: every check on every variant of the release under test.

Each test is one check kind, parametrized by variant id (the pytest param id); the plugin
(``equivalence.plugin``) marks checks that do not apply as skipped with the reason, and the
check that an ``expected_failure`` variant must fail as ``xfail(strict=True)``. Hypothesis draws
raw uint8 BGR image batches; ``gate.check`` compares and records (see ``equivalence.checks``).
Each check runs its share of the selected profile's ``max_examples`` (``examples(check)``).
The photo check has fixed inputs instead (``equivalence.photos``): ``gate.check_fixed`` runs
every same-sized batch of the photo set once.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from equivalence.checks import examples


@pytest.mark.gate_check("reference")
@settings(max_examples=examples("reference"))
@given(data=st.data())
def test_reference(gate, variant_id, data):
    """The variant, fed raw images, matches the reference pipeline (OpenCV + Lite)."""
    gate.check("reference", variant_id, data)


@pytest.mark.gate_check("fuse")
@settings(max_examples=examples("fuse"))
@given(data=st.data())
def test_fuse(gate, variant_id, data):
    """Conv-bias fusion on matches fusion off, with the same preprocessing."""
    gate.check("fuse", variant_id, data)


@pytest.mark.gate_check("eager")
@settings(max_examples=examples("eager"))
@given(data=st.data())
def test_eager(gate, variant_id, data):
    """The Lite graph matches the eager MegEngine module it was traced from (built-ins)."""
    gate.check("eager", variant_id, data)


@pytest.mark.gate_check("batch")
@settings(max_examples=examples("batch"))
@given(data=st.data())
def test_batch(gate, variant_id, data):
    """Sample i of a batch matches the same image run alone."""
    gate.check("batch", variant_id, data)


@pytest.mark.gate_check("determinism")
@settings(max_examples=examples("determinism"))
@given(data=st.data())
def test_determinism(gate, variant_id, data):
    """The same input twice (another in between) gives the same output."""
    gate.check("determinism", variant_id, data)


@pytest.mark.gate_check("device")
@settings(max_examples=examples("device"))
@given(data=st.data())
def test_device(gate, variant_id, data):
    """CPU matches CUDA (skipped without a CUDA device)."""
    gate.check("device", variant_id, data)


@pytest.mark.gate_check("photos")
def test_photos(gate, variant_id):
    """On real photos the variant keeps the reference pipeline's top-1 class and matches it."""
    gate.check_fixed("photos", variant_id)
