"""One speed ratio with a bootstrap confidence interval, from the raw per-round timings.

A ratio compares two measured configurations: ``median(numerator rounds) / median(denominator
rounds)``. Several pairs (e.g. fused against external for every model x cbn x device at one batch
size) combine into one figure, the geometric mean of their ratios, so a headline says "1.12x
(95 % CI 1.08-1.16)" instead of a range over configurations. The interval is a percentile
bootstrap (``scipy.stats.bootstrap``) that resamples the rounds of every benchmark independently:
it says how much the figure moves with the round-to-round noise inside the saved runs, not with
drift between runs (that needs paired timing, ``bench.paired``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
"""Two-sided confidence level of every interval in the report."""

RESAMPLES = 2000
"""Bootstrap resamples. Measured: the range of each interval end over 10 seeds, relative to it,
for a 10 % ratio of two synthetic log-normal timings (``reports.synthetic.timings``):

| rounds per side | 3 % spread | 30 % spread |
|---|---|---|
| 12 | 0.09 / 0.15 % | 0.96 / 1.5 % |
| 50 | 0.08 / 0.06 % | 0.83 / 0.57 % |
| 200 | 0.07 / 0.07 % | 0.70 / 0.72 % |

so the second decimal the report prints holds except on very noisy rows, which are flagged.
"""


@dataclass(frozen=True)
class Ratio:
    """A ratio, its confidence interval (NaN when some side has no raw timings) and how many
    pairs it combines."""

    value: float
    low: float
    high: float
    pairs: int

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    @property
    def clear(self) -> bool:
        """The whole interval lies on one side of 1."""
        return self.has_interval and (self.low > 1 or self.high < 1)

    def __str__(self) -> str:
        text = f"{self.value:.2f}x"
        if self.has_interval:
            text += f" ({CONFIDENCE:.0%} CI {self.low:.2f}-{self.high:.2f})".replace("%", " %")
        return text


def _geomean_of_median_ratios(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
    numerators, denominators = samples[0::2], samples[1::2]
    logs = [
        np.log(np.median(top, axis=axis)) - np.log(np.median(bottom, axis=axis))
        for top, bottom in zip(numerators, denominators, strict=True)
    ]
    return np.exp(np.mean(logs, axis=0))


def ratio(
    pairs: Sequence[tuple[object, object]],
    medians: Sequence[tuple[float, float]] | None = None,
    seed: int = 0,
) -> Ratio:
    """The geometric mean over ``pairs`` of ``median(numerator) / median(denominator)``.

    ``pairs`` holds (numerator rounds, denominator rounds) as arrays of seconds, or None where a
    run was saved without raw timings; then ``medians`` (the saved medians of each pair) give
    the figure and the interval is NaN. ``seed`` fixes the bootstrap's resampling.
    """
    if not pairs:
        raise ValueError("ratio() needs at least one pair")
    usable = all(top is not None and bottom is not None for top, bottom in pairs)
    if not usable:
        if medians is None:
            raise ValueError("pairs without raw timings need their medians")
        logs = [math.log(top / bottom) for top, bottom in medians]
        return Ratio(math.exp(sum(logs) / len(logs)), math.nan, math.nan, len(pairs))
    samples = [np.asarray(side, dtype=float) for pair in pairs for side in pair]
    value = float(_geomean_of_median_ratios(*samples))
    if min(s.size for s in samples) < 2:
        return Ratio(value, math.nan, math.nan, len(pairs))
    from scipy.stats import bootstrap

    result = bootstrap(
        samples,
        _geomean_of_median_ratios,
        n_resamples=RESAMPLES,
        confidence_level=CONFIDENCE,
        method="percentile",
        vectorized=True,
        random_state=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return Ratio(value, float(interval.low), float(interval.high), len(pairs))
