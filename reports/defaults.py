"""Defaults shared by the CLI and the API; constants only, so ``--help`` imports nothing heavy."""

from pathlib import Path

STORAGE = Path(".benchmarks")
"""pytest-benchmark's default storage folder: one subfolder per machine id."""

GATE = Path("results/gate.json")
"""Where the equivalence gate writes its result in ``tox -e bench``."""

OUT = Path("results")
"""Where report files go (git-ignored)."""

NOISY_CV = 0.10
"""Rows whose coefficient of variation (stddev / mean) exceeds this are flagged noisy.

10 % is roughly where, on a shared 2-vCPU runner, one stall per few dozen rounds starts to move the
mean; medians are still usable but speedups below the noise band should not be trusted.
"""

ALPHA = 0.05
"""Significance level of the Mann-Whitney U test in ``--compare``."""

BASELINE_DEVICE = "cpu"
"""The device config other devices' speedups are relative to."""
