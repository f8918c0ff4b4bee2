"""Defaults shared by the CLI and the API; constants only, so ``--help`` imports nothing heavy."""

from pathlib import Path

STORAGE = Path(".benchmarks")
"""pytest-benchmark's default storage folder: one subfolder per machine id."""

GATE = Path("results/gate.json")
"""Where the equivalence gate writes its result in ``tox -e bench``."""

OUT = Path("results")
"""Where report files go (git-ignored)."""

NOISY = 0.05
"""Rows whose median is uncertain by more than this fraction (:mod:`reports.noise`) are flagged
noisy. MEASUREMENT PENDING.
"""

ALPHA = 0.05
"""Significance level of the Mann-Whitney U test in ``--compare``."""

TUNED = "tuned.json"
"""The file ``python -m bench.tune --release DIR`` writes into the release folder ``DIR``."""

BASELINE_DEVICE = "cpu"
"""The device config other devices' speedups are relative to."""
