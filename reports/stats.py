"""Timing statistics of one saved benchmark, from its raw timings when pytest-benchmark kept them.

pytest-benchmark stores the per-round timings (``stats.data``, seconds per call) only when run with
``--benchmark-save-data``. With them every figure below is computed here with numpy
(``np.percentile``, linear interpolation; sample standard deviation). Without them the saved summary
fields are used as they are (its quartiles use a slightly different method) and p90/p99 are unknown;
the ``timings`` field says which source a row came from.
"""

from __future__ import annotations

import math

import numpy as np

STAT_FIELDS = ("rounds", "min", "max", "mean", "stddev", "median", "p90", "p99", "q1", "q3", "iqr")
SUMMARY_FIELDS = ("min", "max", "mean", "stddev", "median", "q1", "q3", "iqr")


def timing_stats(stats: object) -> dict | None:
    """Statistics of one ``stats`` object of a saved benchmark, or None when it holds no timings.

    The result has every name in ``STAT_FIELDS`` plus ``cv`` (stddev / mean), ``timings``
    (``"raw"`` or ``"summary"``) and ``samples`` (the raw timings as an array, or None).
    """
    if not isinstance(stats, dict):
        return None
    samples = _samples(stats.get("data"))
    if samples is not None:
        return _from_samples(samples)
    return _from_summary(stats)


def _samples(data: object) -> np.ndarray | None:
    if not isinstance(data, list) or not data:
        return None
    try:
        samples = np.asarray(data, dtype=float)
    except (TypeError, ValueError):
        return None
    return samples if samples.ndim == 1 and np.isfinite(samples).all() else None


def _from_samples(samples: np.ndarray) -> dict:
    q1, median, q3, p90, p99 = np.percentile(samples, [25, 50, 75, 90, 99])
    mean = float(samples.mean())
    stddev = float(samples.std(ddof=1)) if samples.size > 1 else 0.0
    return {
        "rounds": int(samples.size),
        "min": float(samples.min()),
        "max": float(samples.max()),
        "mean": mean,
        "stddev": stddev,
        "median": float(median),
        "p90": float(p90),
        "p99": float(p99),
        "q1": float(q1),
        "q3": float(q3),
        "iqr": float(q3 - q1),
        "cv": _ratio(stddev, mean),
        "timings": "raw",
        "samples": samples,
    }


def _from_summary(stats: dict) -> dict | None:
    values = {field: _number(stats.get(field)) for field in SUMMARY_FIELDS}
    if math.isnan(values["median"]) or math.isnan(values["mean"]):
        return None
    rounds = _number(stats.get("rounds"))
    return {
        **values,
        "rounds": None if math.isnan(rounds) else int(rounds),
        "p90": math.nan,
        "p99": math.nan,
        "cv": _ratio(values["stddev"], values["mean"]),
        "timings": "summary",
        "samples": None,
    }


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan
