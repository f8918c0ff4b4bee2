"""The release gate: every check on every variant of the release under test.

One test per check record (``equivalence.checks.GATE_CHECKS``), named ``test_<check>`` and
parametrized by variant id (the pytest param id), so ``-k 'test_reference and <variant>'``
selects one. The plugin (``equivalence.plugin``) marks checks that do not apply as skipped with
the record's reason, and marks a variant's ``expected_failure`` as its record says. Hypothesis
draws raw uint8 BGR image batches; ``gate.check`` compares and records. Each check runs its
share of the selected profile's ``max_examples`` (``examples(check)``); a check with fixed
inputs (the photo set) runs every batch of them once through ``gate.check_fixed``.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mge_harness.equivalence.checks import GATE_CHECKS, Check, examples


def _test_for(check: Check):
    """The test function of one check record."""
    name = check.name
    if check.fixed is not None:

        def test(gate, variant_id):
            gate.check_fixed(name, variant_id)

    else:

        def test(gate, variant_id, data):
            gate.check(name, variant_id, data)

    test.__name__ = test.__qualname__ = f"test_{name}"
    test.__doc__ = f"The {name} check: {check.description}."
    if check.fixed is None:
        test = settings(max_examples=examples(name))(given(data=st.data())(test))
    return pytest.mark.gate_check(name)(test)


for _check in GATE_CHECKS.values():
    globals()[f"test_{_check.name}"] = _test_for(_check)
del _check
