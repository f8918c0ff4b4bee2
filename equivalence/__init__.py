"""The equivalence suite: Hypothesis strategies, comparators and the release gate.

``pytest equivalence/ --release DIR`` checks every variant of a release folder against the
reference pipeline and against each other; see ``equivalence/README.md``. Importing this package
is cheap: MegEngine is only imported when a check runs.
"""
