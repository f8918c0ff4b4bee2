"""Regression rules for ``--fail-on``: tiny parsed objects, in the spirit of pytest-benchmark's.

``median:10%`` fails when the candidate's median is more than 10 % above the base's; ``min:0.002``
fails when the candidate's minimum is more than 0.002 s (2 ms) above. Fields: see :data:`FIELDS`.

Noise band assumed: a rule only fails on a change that is also significant (Mann-Whitney U on the
raw timings, see :mod:`reports.compare`), so the threshold only needs to exceed the run-to-run drift
of the statistic itself. On a shared 2-vCPU runner medians drift by a few percent between runs, so
use 10 % or more for ``median``/``mean`` and compare ``max``/``stddev``/``p99`` with care: the tails
are where a noisy neighbour shows up first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mge_harness.reports.errors import ReportError

FIELDS = ("min", "max", "mean", "median", "stddev", "iqr", "p90", "p99")
_RULE = re.compile(
    r"^(?P<field>\w+):(?:(?P<percent>\d+(?:\.\d+)?)%|(?P<seconds>\d*\.?\d+(?:[eE][-+]?\d+)?))$"
)


@dataclass(frozen=True)
class RegressionRule:
    """How much slower ``field`` may get: ``threshold`` percent if ``relative``, else seconds."""

    field: str
    threshold: float
    relative: bool

    @classmethod
    def parse(cls, text: str) -> RegressionRule:
        """Parse ``FIELD:N%`` or ``FIELD:SECONDS``; ReportError saying what is accepted."""
        match = _RULE.match(text.strip())
        if not match or match["field"] not in FIELDS:
            raise ReportError(
                f"--fail-on {text!r}: expected FIELD:N% or FIELD:SECONDS "
                f"(e.g. median:10% or min:0.002) with FIELD one of {', '.join(FIELDS)}"
            )
        if match["percent"] is not None:
            return cls(match["field"], float(match["percent"]), relative=True)
        return cls(match["field"], float(match["seconds"]), relative=False)

    def change(self, base: float, candidate: float) -> float:
        """Slowdown of ``candidate`` against ``base`` in the rule's unit (percent or seconds)."""
        if self.relative:
            return (candidate / base - 1) * 100 if base else float("inf")
        return candidate - base

    def exceeded(self, base: float, candidate: float) -> bool:
        """True when the slowdown is larger than the threshold (False when a value is unknown)."""
        return bool(self.change(base, candidate) > self.threshold)

    def describe(self, base: float, candidate: float) -> str:
        """``median +31.2% > 10%`` style text for a failure message."""
        unit = "%" if self.relative else " s"
        return f"{self.field} {self.change(base, candidate):+.4g}{unit} > {self.threshold:g}{unit}"

    def __str__(self) -> str:
        return f"{self.field}:{self.threshold:g}{'%' if self.relative else ''}"
