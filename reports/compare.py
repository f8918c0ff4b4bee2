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

from reports.defaults import ALPHA
from reports.errors import ReportError
from reports.rules import RegressionRule
from reports.sources import SavedRun
from reports.table import build_table

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


# --- paired ratios (bench/test_paired.py) ---------------------------------------------------


@dataclass(frozen=True)
class PairedCheck:
    """The paired benchmarks of one saved run against the rules; truthy when nothing failed."""

    run: str
    table: pd.DataFrame
    failures: tuple[str, ...]
    rules: tuple[RegressionRule, ...] = ()

    def __bool__(self) -> bool:
        return not self.failures


_PAIRED_COLUMNS = ("benchmark", "kind", "baseline", "candidate", "baseline_ms", "candidate_ms",
                   "ratio", "low", "high", "rounds", "excludes_1", "failed")  # fmt: skip


def paired_rows(run: SavedRun) -> list[dict]:
    """One row per benchmark of ``run`` whose ``extra_info["paired"]`` holds a timed ratio."""
    rows = []
    for bench in run.benchmarks:
        info = bench.get("extra_info") if isinstance(bench.get("extra_info"), dict) else {}
        paired = info.get("paired")
        if not isinstance(paired, dict) or not _interval(paired.get("interval")):
            continue
        low, high = (float(v) for v in paired["interval"])
        rows.append(
            {
                "benchmark": bench["name"],
                "kind": paired.get("kind"),
                "baseline": _side(paired.get("baseline")),
                "candidate": _side(paired.get("candidate")),
                "baseline_ms": float(paired.get("baseline_ms", math.nan)),
                "candidate_ms": float(paired.get("candidate_ms", math.nan)),
                "ratio": float(paired.get("ratio", math.nan)),
                "low": low,
                "high": high,
                "rounds": paired.get("rounds"),
                "excludes_1": not low <= 1.0 <= high,
            }
        )
    return rows


def _interval(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, (int, float)) and math.isfinite(v) for v in value)
    )


def _side(side: object) -> str:
    if not isinstance(side, dict):
        return ""
    return f"{side.get('variant')} on {side.get('device')}"


def check_paired(run: SavedRun, rules: Sequence[RegressionRule] = ()) -> PairedCheck:
    """``run``'s paired ratios against ``rules`` (``RegressionRule.interval_exceeded``: the
    whole interval beyond the limit); ReportError when ``run`` has no paired benchmarks."""
    rows = paired_rows(run)
    if not rows:
        raise ReportError(
            f"{run.path}: no paired benchmarks (extra_info 'paired' with a ratio and interval); "
            "expected a run of pytest bench/ --baseline-release DIR, --pair-devices or "
            "--pair-variants"
        )
    failures = []
    for row in rows:
        failed = [
            rule.describe_interval(row["ratio"], row["low"], row["high"], row["baseline_ms"] / 1e3)
            for rule in rules
            if rule.interval_exceeded(row["low"], row["baseline_ms"] / 1e3)
        ]
        row["failed"] = "; ".join(failed)
        failures += [f"{row['benchmark']}: {text}" for text in failed]
    table = pd.DataFrame(rows, columns=list(_PAIRED_COLUMNS))
    return PairedCheck(run.label, table, tuple(failures), tuple(rules))


def paired_text(check: PairedCheck) -> str:
    """The check as plain text: one line per ratio, then the rules and their failures."""
    lines = [f"Paired ratios in {check.run}: median(candidate) / median(baseline), 95 % interval"]
    for row in check.table.to_dict("records"):
        mark = "differs" if row["excludes_1"] else "within noise"
        lines.append(
            f"  {row['benchmark']}: {row['ratio']:.3f}x [{row['low']:.3f}, {row['high']:.3f}] "
            f"({row['candidate']} against {row['baseline']}; {mark})"
        )
    skipped = [str(rule) for rule in check.rules if not rule.applies_to_paired]
    if skipped:
        lines.append(f"Not applied (paired ratios are of medians): {', '.join(skipped)}")
    rules = ", ".join(str(rule) for rule in check.rules) or "none given (--fail-on)"
    lines.append(f"Rules: {rules}.")
    lines += [f"- FAILED {text}" for text in check.failures] or [
        "No rule failed." if check.rules else "Nothing to check."
    ]
    return "\n".join(lines) + "\n"
