"""Which rows are too noisy to trust, and why.

A row's noise is how uncertain its *median* is, the figure every ratio in the report is built
from: the half-width of the median's 95 % interval relative to the median, by the notch formula
of McGill, Tukey and Larsen (1978; matplotlib's box-plot notches),
``uncertainty = 1.57 * IQR / sqrt(rounds) / median``. It needs only the saved quartiles and round
count, so rows saved without raw timings get it too. The coefficient of variation (stddev / mean)
is kept in the table but not used: one 20x stall among 200 rounds sets it above 10 % while the
median does not move, so on a shared machine it flagged every row.

The threshold (:data:`reports.defaults.NOISY`) separates the rows of a quiet run from most rows of
a busy one; the measurements are in its docstring. A run saved at a load above one task per CPU
is noisy as a whole: measured there, its medians moved between identical runs by far more than
any figure inside the run predicted.

The cause shown for a noisy row comes from what the run recorded (``bench.machine.load_info``):
a load average above the run's CPUs (other processes took turns on its cores), CPU steal at or
above the 1 % a sample resolves (a hypervisor ran other guests), few rounds (too little data
for a stable median), or, when none of those, a heavy tail inside the run (the p99 over the median).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

NOTCH = 1.57
"""McGill, Tukey and Larsen's constant: median +- 1.57 IQR / sqrt(n) is about a 95 % interval."""

BUSY_LOAD_PER_CPU = 1.0
"""Above one runnable task per CPU the benchmark had to wait for a core: by definition, not
a measured threshold."""

STEAL_RESOLUTION = 0.01
"""The smallest steal share ``bench.machine.load_info`` resolves (1 jiffy in 100)."""

FEW_ROUNDS = 10
"""Below 10 rounds the distribution-free 95 % interval of the median runs from the 2nd to the
9th sorted round or wider: the median is barely pinned down whatever the spread."""


def median_uncertainty(table: pd.DataFrame) -> pd.Series:
    """``NOTCH * iqr / sqrt(rounds) / median`` per row (NaN where a figure is missing)."""
    rounds = table["rounds"].astype(float)
    return NOTCH * table["iqr"] / np.sqrt(rounds) / table["median"]


def cause(row: pd.Series) -> str:
    """The likeliest cause of a noisy row, in words, from its run's load record."""
    reasons = []
    load = row.get("load_per_cpu")
    if _known(load) and load > BUSY_LOAD_PER_CPU:
        reasons.append(f"machine busy: load {load:.1f} per CPU")
    steal = row.get("steal")
    if _known(steal) and steal >= STEAL_RESOLUTION:
        reasons.append(f"CPU steal {steal:.0%}")
    rounds = row.get("rounds")
    if _known(rounds) and rounds < FEW_ROUNDS:
        reasons.append(f"only {int(rounds)} rounds")
    if not reasons:
        tail = row.get("p99") / row.get("median") if _known(row.get("p99")) else math.nan
        if math.isfinite(tail):
            reasons.append(f"stalls inside the run: p99 is {tail:.1f}x the median")
        else:
            reasons.append("spread inside the run (no load record to say why)")
    return "; ".join(reasons)


def _known(value: object) -> bool:
    return value is not None and not pd.isna(value)
