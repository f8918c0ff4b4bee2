"""Tables from the equivalence gate's ``gate.json``.

The file is written by another tool and may lag behind or lead this reader, so every field except
the ``variants`` list (checked by :func:`reports.sources.read_gate`) is optional: missing values
stay blank.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

METRICS = (
    "max_abs",
    "max_rel",
    "mean_abs",
    "cosine",
    "mismatch_fraction",
    "top1_agreement",
    "top5_agreement",
    "min_atol",
    "min_rtol",
)
_WORST = {"max_abs": max, "max_rel": max, "cosine": min, "top1_agreement": min}


def _variants(gate: dict | None) -> list[dict]:
    variants = (gate or {}).get("variants") or []
    return [v for v in variants if isinstance(v, dict) and v.get("id") is not None]


def _checks(variant: dict) -> list[dict]:
    return [check for check in variant.get("checks") or [] if isinstance(check, dict)]


def _metrics(check: dict) -> dict:
    return check["metrics"] if isinstance(check.get("metrics"), dict) else {}


def check_rows(gate: dict | None) -> pd.DataFrame:
    """One row per variant x check (a variant without checks keeps one row)."""
    rows = [
        {
            "variant": variant["id"],
            "verdict": variant.get("verdict"),
            "expected_failure": variant.get("expected_failure"),
            "check": check.get("check"),
            "check_verdict": check.get("verdict"),
            "examples": check.get("examples"),
            **{name: _metrics(check).get(name) for name in METRICS},
            "margin": check.get("margin"),
            "message": check.get("message"),
        }
        for variant in _variants(gate)
        for check in _checks(variant) or [{}]
    ]
    columns = ["variant", "verdict", "expected_failure", "check", "check_verdict", "examples"]
    return pd.DataFrame(rows, columns=[*columns, *METRICS, "margin", "message"])


def variant_summary(gate: dict | None) -> pd.DataFrame:
    """One row per variant: its verdict (``equivalence``) and the worst metric over its checks.

    Worst means largest ``max_abs``/``max_rel`` and smallest ``cosine``/``top1_agreement``.
    """
    rows = []
    for variant in _variants(gate):
        metrics = [_metrics(check) for check in _checks(variant)]
        worst = {
            name: _worst([m.get(name) for m in metrics], pick) for name, pick in _WORST.items()
        }
        rows.append({"variant": variant["id"], "equivalence": variant.get("verdict"), **worst})
    return pd.DataFrame(rows, columns=["variant", "equivalence", *_WORST])


def _worst(values: list, pick) -> float:
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return float(pick(numbers)) if numbers else np.nan
