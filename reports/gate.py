"""Tables from the equivalence gate's ``gate.json``.

The file is written by another tool and may lag behind or lead this reader, so every field except
the ``variants`` list (checked by :func:`reports.sources.read_gate`) is optional: missing values,
and values of the wrong type (a number where a name belongs, text where a number does), stay
blank; a variant without a string ``id`` is left out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

METRICS = (
    "max_abs",
    "max_rel",
    "mean_abs",
    "cosine",
    "spread_ratio",  # the scale-free rule (equivalence/README.md): error over between-image spread
    "centred_cosine",
    "mismatch_fraction",
    "top1_agreement",
    "top5_agreement",
    "min_atol",
    "min_rtol",
)
_WORST = {"max_abs": max, "max_rel": max, "cosine": min, "top1_agreement": min}


def _variants(gate: dict | None) -> list[dict]:
    variants = _list((gate or {}).get("variants"))
    return [v for v in variants if isinstance(v, dict) and isinstance(v.get("id"), str)]


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


def _checks(variant: dict) -> list[dict]:
    return [check for check in _list(variant.get("checks")) if isinstance(check, dict)]


def _metrics(check: dict) -> dict:
    metrics = check["metrics"] if isinstance(check.get("metrics"), dict) else {}
    return {name: _number(metrics.get(name)) for name in METRICS}


def _number(value: object) -> float | None:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if is_number else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def check_rows(gate: dict | None) -> pd.DataFrame:
    """One row per variant x check (a variant without checks keeps one row)."""
    rows = [
        {
            "variant": variant["id"],
            "verdict": _text(variant.get("verdict")),
            "expected_failure": _text(variant.get("expected_failure")),
            "check": _text(check.get("check")),
            "check_verdict": _text(check.get("verdict")),
            "examples": _number(check.get("examples")),
            **_metrics(check),
            "margin": _number(check.get("margin")),
            "diagnosis": _diagnosis(check.get("diagnosis")),
            "evidence": _text(check.get("evidence")),
            "message": _text(check.get("message")),
        }
        for variant in _variants(gate)
        for check in _checks(variant) or [{}]
    ]
    columns = ["variant", "verdict", "expected_failure", "check", "check_verdict", "examples"]
    tail = ["margin", "diagnosis", "evidence", "message"]
    return pd.DataFrame(rows, columns=[*columns, *METRICS, *tail])


def _diagnosis(diagnosis) -> str | None:
    """A failure's closest explanation in words (``equivalence.diagnose``), or None."""
    if not isinstance(diagnosis, dict):
        return None
    family = diagnosis.get("family")
    return _text(family) if family else "no known explanation"


def variant_summary(gate: dict | None) -> pd.DataFrame:
    """One row per variant: its verdict (``equivalence``), its manifest's ``expected_failure``
    (the reason, or None), its smallest check margin (``gate_margin``: 1 - error / tolerance,
    above 0 passes) and the worst metric over its checks.

    Worst means largest ``max_abs``/``max_rel`` and smallest ``cosine``/``top1_agreement``.
    """
    rows = []
    for variant in _variants(gate):
        checks = _checks(variant)
        metrics = [_metrics(check) for check in checks]
        worst = {
            name: _worst([m.get(name) for m in metrics], pick) for name, pick in _WORST.items()
        }
        rows.append(
            {
                "variant": variant["id"],
                "equivalence": _text(variant.get("verdict")),
                "expected_failure": _text(variant.get("expected_failure")),
                "gate_margin": _worst([_number(c.get("margin")) for c in checks], min),
                **worst,
            }
        )
    columns = ["variant", "equivalence", "expected_failure", "gate_margin", *_WORST]
    return pd.DataFrame(rows, columns=columns)


def variant_rows(gate: dict | None) -> pd.DataFrame:
    """The gate table of the report: one row per variant, its checks summed up (how many
    passed, the check with the smallest margin, the first failure's closest explanation)."""
    checks = check_rows(gate)
    rows = []
    for variant, mine in checks.groupby("variant", sort=False):
        ran = mine[mine["check"].notna()]
        failed = ran[~ran["check_verdict"].isin(["pass", "skip", "skipped"])]
        margins = ran["margin"].astype(float)
        tightest = ran.loc[margins.idxmin()] if margins.notna().any() else None
        rows.append(
            {
                "variant": variant,
                "verdict": mine["verdict"].iloc[0],
                "expected_failure": mine["expected_failure"].iloc[0],
                "checks": f"{len(ran) - len(failed)} of {len(ran)} passed" if len(ran) else None,
                "failed": ", ".join(str(c) for c in failed["check"]) or None,
                "gate_margin": None if tightest is None else tightest["margin"],
                "tightest_check": None if tightest is None else tightest["check"],
                "diagnosis": next((d for d in failed["diagnosis"] if isinstance(d, str)), None),
            }
        )
    return pd.DataFrame(rows, columns=[
        "variant", "verdict", "expected_failure", "checks", "failed", "gate_margin",
        "tightest_check", "diagnosis",
    ])  # fmt: skip


def _worst(values: list, pick) -> float:
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return float(pick(numbers)) if numbers else np.nan
