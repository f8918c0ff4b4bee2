"""Compare two saved runs benchmark by benchmark, with a significance test on the raw timings.

Benchmarks are matched on the configuration key (variant, device, mode, batch, image size), so a
renamed test still matches. For each pair: the median ratio (candidate / base), and a two-sided
Mann-Whitney U test of the two sets of raw timings; ``significant`` means p < ``alpha``.

A regression rule fails only when its threshold is exceeded and the difference is significant.
When either run lacks raw timings (saved without ``--benchmark-save-data``) no test is possible and
the rule falls back to the threshold alone, as pytest-benchmark's own ``--benchmark-compare-fail``
does; the failure message says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mge_harness.reports.defaults import ALPHA
from mge_harness.reports.rules import RegressionRule
from mge_harness.reports.sources import SavedRun
from mge_harness.reports.table import build_table

_SIDES = {"left_only": "only in base", "right_only": "only in candidate"}


@dataclass(frozen=True)
class Comparison:
    """The per-benchmark comparison table and the rule failures; truthy when nothing failed."""

    base: str
    candidate: str
    table: pd.DataFrame
    failures: tuple[str, ...]
    alpha: float
    rules: tuple[RegressionRule, ...] = ()

    def __bool__(self) -> bool:
        return not self.failures


def compare_runs(
    base: SavedRun,
    candidate: SavedRun,
    rules: Sequence[RegressionRule] = (),
    alpha: float = ALPHA,
) -> Comparison:
    """Compare ``candidate`` against ``base``; ``alpha`` defaults to 0.05."""
    fields = dict.fromkeys(["median", *(rule.field for rule in rules)])
    columns = ["key", "status", *fields, "samples"]
    pairs = build_table([base])[columns].merge(
        build_table([candidate])[columns],
        on="key",
        how="outer",
        suffixes=("_base", "_cand"),
        indicator=True,
    )
    rows = [_compare_pair(pair, rules, alpha) for pair in pairs.to_dict("records")]
    table = pd.DataFrame(rows).sort_values("benchmark", ignore_index=True)
    failures = tuple(f"{row['benchmark']}: {row['failed']}" for row in rows if row["failed"])
    return Comparison(base.label, candidate.label, table, failures, alpha, tuple(rules))


def _compare_pair(pair: dict, rules: Sequence[RegressionRule], alpha: float) -> dict:
    base, cand = pair["median_base"], pair["median_cand"]
    p_value = mann_whitney_p(pair["samples_base"], pair["samples_cand"])
    significant = bool(p_value < alpha)
    failed = []
    for rule in rules:
        before, after = pair[f"{rule.field}_base"], pair[f"{rule.field}_cand"]
        if rule.exceeded(before, after) and (significant or math.isnan(p_value)):
            evidence = f"p={p_value:.2g}" if significant else "no raw timings: threshold only"
            failed.append(f"{rule.describe(before, after)} ({evidence})")
    return {
        "benchmark": pair["key"],
        "base_ms": base * 1e3,
        "candidate_ms": cand * 1e3,
        "ratio": cand / base,
        "p_value": p_value,
        "significant": significant,
        "verdict": _verdict(pair, p_value, significant),
        "failed": "; ".join(failed),
    }


def _verdict(pair: dict, p_value: float, significant: bool) -> str:
    if pair["_merge"] in _SIDES:
        return _SIDES[pair["_merge"]]
    if pair["status_base"] != "ok" or pair["status_cand"] != "ok":
        return f"not measured ({pair['status_base']} -> {pair['status_cand']})"
    if math.isnan(p_value):
        return "untested (no raw timings)"
    if not significant:
        return "within noise"
    return "slower" if pair["median_cand"] > pair["median_base"] else "faster"


def mann_whitney_p(base: object, candidate: object) -> float:
    """Two-sided Mann-Whitney U p-value of two timing samples; NaN when either is missing."""
    if not isinstance(base, np.ndarray) or not isinstance(candidate, np.ndarray):
        return math.nan
    if base.size < 2 or candidate.size < 2:
        return math.nan
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(candidate, base, alternative="two-sided").pvalue)
