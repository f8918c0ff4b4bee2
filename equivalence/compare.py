"""Compare an output array with a reference array under one documented pass rule.

The pass rule, the only one in the harness: ``out`` passes against ``ref`` when

* both have the same shape and dtype (else status ``"shape"`` / ``"dtype"``),
* both are finite: a NaN or Inf anywhere is status ``"nonfinite"``, never a pass,
* every element satisfies ``|out - ref| <= atol + rtol * |ref|`` (else ``"mismatch"``), and
* the cosine similarity of every batch row (axis 0) is at least ``cosine_min`` (else
  ``"mismatch"``): a floor that catches a uniform drift which the elementwise rule lets through
  on large logits, and
* given the reference's scale (:class:`OutputScale`: its mean and between-image spread S over
  distinct images), the scale-free rule: the RMS error of every batch row is at most
  ``spread_ratio * S``, and the cosine of ``out - mean`` and ``ref - mean`` over the batch is at
  least ``centred_cosine_min``. Unlike the elementwise rule and the raw cosine, it does not
  depend on the outputs' units or on a constant offset (a random-init net whose logits sit
  near 30 and differ by 0.4 between images has a raw cosine near 1 for any input).

Tolerances are data (:class:`Tolerance`); which tolerance applies to which check lives in
:mod:`equivalence.tolerances`. The result (:class:`CompareResult`) is truthy when it passes, reads
well as a string and turns into JSON with ``to_dict()``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from mge_harness.exporters.errors import HarnessError

_REQUIRED_FIELDS = ("atol", "rtol", "cosine_min")
_TOLERANCE_FIELDS = (*_REQUIRED_FIELDS, "spread_ratio", "centred_cosine_min")

#: Defaults of the scale-free fields (``equivalence/README.md``, "Scale-free comparison").
SPREAD_RATIO = 1e-3
CENTRED_COSINE_MIN = 0.999999


@dataclass(frozen=True)
class Tolerance:
    """How far ``out`` may stray from ``ref``: ``|out - ref| <= atol + rtol * |ref|`` elementwise,
    and a cosine similarity of at least ``cosine_min`` per batch row; with the reference's scale
    (:class:`OutputScale`), also the scale-free rule: every row's RMS error at most
    ``spread_ratio`` times the between-image spread, and the cosine of the centred outputs at
    least ``centred_cosine_min``."""

    atol: float
    rtol: float
    cosine_min: float
    spread_ratio: float = SPREAD_RATIO
    centred_cosine_min: float = CENTRED_COSINE_MIN

    def __post_init__(self):
        for name in ("atol", "rtol", "spread_ratio"):
            value = getattr(self, name)
            if not _is_number(value) or not math.isfinite(value) or value < 0:
                raise HarnessError(f"tolerance {name} must be a finite number >= 0, got {value!r}")
        for name in ("cosine_min", "centred_cosine_min"):
            value = getattr(self, name)
            if not _is_number(value) or not -1.0 <= value <= 1.0:
                raise HarnessError(f"tolerance {name} must be a number in [-1, 1], got {value!r}")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(
        cls, data: Any, *, base: Tolerance | None = None, source: str = "tolerance"
    ) -> Tolerance:
        """Builds a tolerance from ``{"atol", "rtol", "cosine_min"}`` and optionally
        ``spread_ratio`` and ``centred_cosine_min``.

        With ``base``, missing fields are taken from it (a partial override); without it, the
        first three are required. Errors name ``source``.
        """
        if not isinstance(data, Mapping):
            raise HarnessError(
                f"{source}: expected a table of atol, rtol, cosine_min, got {data!r}"
            )
        unknown = sorted(set(data) - set(_TOLERANCE_FIELDS))
        if unknown:
            raise HarnessError(
                f"{source}: unknown field(s) {', '.join(map(repr, unknown))}; "
                f"expected some of {', '.join(_TOLERANCE_FIELDS)}"
            )
        if base is None:
            missing = [k for k in _REQUIRED_FIELDS if k not in data]
            if missing:
                raise HarnessError(f"{source}: missing {', '.join(map(repr, missing))}")
            base = cls(0.0, 0.0, -1.0)
        try:
            return replace(base, **dict(data))
        except HarnessError as err:
            raise HarnessError(f"{source}: {err}") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class OutputScale:
    """How much one reference output varies between distinct images: ``centre`` is its mean over
    them (shape ``(1, ...)``), ``spread`` the RMS over elements of the deviation from it. What
    the scale-free rule measures errors against (``equivalence.sensitivity.output_scales``)."""

    centre: np.ndarray = field(repr=False)
    spread: float


@dataclass(frozen=True)
class CompareResult:
    """The outcome of one comparison: truthy when it passes.

    Metrics are computed in float64 over the elements where both arrays are finite. ``cosine``
    is the smallest per-row cosine similarity; ``top1_agreement`` / ``top5_agreement`` are the
    shares of batch rows whose arg-max (set of 5 largest) agree, for (N, classes) outputs.
    ``min_atol`` is the smallest atol that passes the elementwise rule at the configured rtol,
    ``min_rtol`` the smallest rtol at the configured atol (``inf`` when none would).
    ``error_ratio`` is ``max |out - ref| / (atol + rtol * |ref|)``; ``margin = 1 - error_ratio``
    is the share of the elementwise tolerance left unused at the worst element (1 when exact,
    negative when failing).
    """

    status: str
    tolerance: Tolerance
    shape: tuple[int, ...]
    dtype: str
    max_abs: float = math.nan
    max_rel: float = math.nan
    mean_abs: float = math.nan
    cosine: float = math.nan
    mismatch_fraction: float = math.nan
    mismatches: int = 0
    size: int = 0
    worst_index: tuple[int, ...] | None = None
    worst_out: float | None = None
    worst_ref: float | None = None
    top1_agreement: float | None = None
    top5_agreement: float | None = None
    min_atol: float = math.nan
    min_rtol: float = math.nan
    error_ratio: float = math.nan
    spread_ratio: float = math.nan
    centred_cosine: float = math.nan
    detail: str = field(default="")

    def __bool__(self) -> bool:
        return self.status == "pass"

    @property
    def margin(self) -> float:
        """The share of the tolerance left unused: of the elementwise rule and, where measured,
        of the spread ratio; the smaller."""
        margins = [1.0 - self.error_ratio]
        if not math.isnan(self.spread_ratio):
            allowed = self.tolerance.spread_ratio
            if allowed > 0:
                margins.append(1.0 - self.spread_ratio / allowed)
            else:
                margins.append(1.0 if self.spread_ratio == 0 else -math.inf)
        return min(margins)

    @property
    def failed_rules(self) -> list[str]:
        """The rules a mismatch broke, each with its value and limit (empty when none did)."""
        tol, failed = self.tolerance, []
        if self.mismatches:
            failed.append(f"elementwise ({self.mismatches} of {self.size} elements outside)")
        if self.cosine < tol.cosine_min:
            failed.append(f"cosine {self.cosine:.8f} < {tol.cosine_min:.8f}")
        if self.spread_ratio > tol.spread_ratio:
            failed.append(
                f"error / between-image spread {self.spread_ratio:.3g} > {tol.spread_ratio:.3g}"
            )
        if self.centred_cosine < tol.centred_cosine_min:
            failed.append(
                f"centred cosine {self.centred_cosine:.8f} < {tol.centred_cosine_min:.8f}"
            )
        return failed

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; non-finite floats (no value, or no passing rtol) become None."""
        data = asdict(self)
        data["shape"] = list(self.shape)
        data["worst_index"] = None if self.worst_index is None else list(self.worst_index)
        data["margin"] = self.margin
        return {k: _json_float(v) for k, v in data.items()}

    def __str__(self) -> str:
        tol = self.tolerance
        rule = f"|out - ref| <= {tol.atol:.3g} + {tol.rtol:.3g} * |ref|"
        if self.status in ("shape", "dtype"):
            return f"{self.status} mismatch: {self.detail}"
        lines = [f"{self.status.upper()}: {self.detail}" if self.detail else self.status.upper()]
        if self.size == 0:
            return lines[0]
        failed = self.failed_rules if self.status == "mismatch" else []
        if failed:
            lines.append(f"  failed: {'; '.join(failed)}")
        lines.append(
            f"  {self.mismatches} of {self.size} elements ({100 * self.mismatch_fraction:.2f}%) "
            f"outside {rule}; margin {self.margin:.3g}"
        )
        if self.worst_index is not None:
            lines.append(
                f"  worst at {list(self.worst_index)}: out {self.worst_out:.6g}, "
                f"ref {self.worst_ref:.6g}"
            )
        lines.append(
            f"  max abs {self.max_abs:.3g}, max rel {self.max_rel:.3g}, mean abs "
            f"{self.mean_abs:.3g}, cosine {self.cosine:.8f} (floor {tol.cosine_min:.8f})"
        )
        if not math.isnan(self.spread_ratio):
            centred = (
                "n/a (the batch is near the centre)"
                if math.isnan(self.centred_cosine)
                else f"{self.centred_cosine:.8f} (floor {tol.centred_cosine_min:.8f})"
            )
            lines.append(
                f"  error / between-image spread {self.spread_ratio:.3g} (at most "
                f"{tol.spread_ratio:.3g}), centred cosine {centred}"
            )
        if self.top1_agreement is not None:
            top5 = "n/a" if self.top5_agreement is None else f"{100 * self.top5_agreement:.0f}%"
            lines.append(f"  top-1 agreement {100 * self.top1_agreement:.0f}%, top-5 {top5}")
        if self.mismatches:  # where it holds, the smallest passing atol says nothing new
            lines.append(
                f"  would pass the elementwise rule with atol >= {self.min_atol:.3g} "
                f"(rtol {tol.rtol:.3g}) or rtol >= {self.min_rtol:.3g} (atol {tol.atol:.3g})"
            )
        return "\n".join(lines)


def _json_float(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def compare(
    ref: np.ndarray, out: np.ndarray, tolerance: Tolerance, scale: OutputScale | None = None
) -> CompareResult:
    """Compares ``out`` with ``ref`` under ``tolerance`` (see the module docstring for the rule);
    with ``scale`` (the reference's between-image spread) the scale-free rule applies too."""
    ref, out = np.asarray(ref), np.asarray(out)
    shape, dtype = tuple(ref.shape), str(ref.dtype)
    if ref.shape != out.shape:
        detail = f"out has shape {tuple(out.shape)}, ref has shape {shape}"
        return CompareResult("shape", tolerance, shape, dtype, detail=detail)
    if ref.dtype != out.dtype:
        detail = f"out has dtype {out.dtype}, ref has dtype {dtype}"
        return CompareResult("dtype", tolerance, shape, dtype, detail=detail)
    ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
    finite = np.isfinite(ref64) & np.isfinite(out64)
    metrics = _metrics(ref64, out64, finite, tolerance)
    if not finite.all():
        detail = f"{_count_nonfinite(out64, 'out')}; {_count_nonfinite(ref64, 'ref')}"
        return CompareResult("nonfinite", tolerance, shape, dtype, detail=detail, **metrics)
    failing = metrics["mismatches"] > 0 or metrics["cosine"] < tolerance.cosine_min
    if scale is not None and scale.spread > 0 and metrics["size"]:
        metrics.update(_scale_free(ref64, out64, scale))
        failing = (
            failing
            or metrics["spread_ratio"] > tolerance.spread_ratio
            # absent (the batch's deviation from the centre is noise-sized): not judged
            or metrics.get("centred_cosine", math.nan) < tolerance.centred_cosine_min
        )
    return CompareResult("mismatch" if failing else "pass", tolerance, shape, dtype, **metrics)


def _scale_free(ref: np.ndarray, out: np.ndarray, scale: OutputScale) -> dict[str, float]:
    """The scale-free metrics: the worst row's RMS error over the spread, and the cosine of the
    centred outputs over the whole batch (NaN when the batch's own deviation from the centre is
    under a tenth of the spread, where the cosine would measure noise)."""
    ratio = worst_row_rms(out - ref) / scale.spread
    try:
        centre = np.broadcast_to(scale.centre, ref.shape)
    except ValueError:  # another shape than the scale was measured on: no centred cosine
        return {"spread_ratio": ratio}
    ref_c, out_c = (ref - centre).ravel(), (out - centre).ravel()
    if np.sqrt(np.mean(ref_c**2)) < 0.1 * scale.spread:
        return {"spread_ratio": ratio}
    return {"spread_ratio": ratio, "centred_cosine": _min_row_cosine(ref_c, out_c)}


def _count_nonfinite(values: np.ndarray, name: str) -> str:
    nan, inf = int(np.isnan(values).sum()), int(np.isinf(values).sum())
    if not nan and not inf:
        return f"{name} is finite"
    first = np.argwhere(~np.isfinite(values))[0].tolist()
    return f"{name} has {nan} NaN and {inf} Inf (first at {first})"


def _metrics(ref: np.ndarray, out: np.ndarray, finite: np.ndarray, tol: Tolerance) -> dict:
    """All metrics over the finite elements of float64 ``ref``/``out`` (same shape)."""
    diff = np.where(finite, np.abs(out - ref), 0.0)
    mag = np.where(finite, np.abs(ref), 0.0)
    allowed = tol.atol + tol.rtol * mag
    ratio = _safe_divide(diff, allowed)
    count = int(finite.sum())
    metrics: dict[str, Any] = {
        "size": count,
        "mismatches": int((finite & (diff > allowed)).sum()),
        "top1_agreement": _topk_agreement(ref, out, 1),
        "top5_agreement": _topk_agreement(ref, out, 5),
    }
    if count == 0:
        return metrics
    worst = np.unravel_index(int(np.argmax(np.where(finite, ratio, -1.0))), ref.shape)
    over_atol = diff > tol.atol
    metrics.update(
        max_abs=float(diff.max()),
        max_rel=float(_safe_divide(diff, mag).max()),
        mean_abs=float(diff.sum() / count),
        cosine=_min_row_cosine(np.where(finite, ref, 0.0), np.where(finite, out, 0.0)),
        mismatch_fraction=metrics["mismatches"] / count,
        worst_index=tuple(int(i) for i in worst),
        worst_out=float(out[worst]),
        worst_ref=float(ref[worst]),
        min_atol=float(max(0.0, (diff - tol.rtol * mag).max())),
        min_rtol=float(_safe_divide(diff - tol.atol, mag)[over_atol].max(initial=0.0)),
        error_ratio=float(ratio.max()),
    )
    return metrics


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` elementwise, with 0 / 0 = 0 and x / 0 = inf for x > 0."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        quotient = num / den
    return np.where(num <= 0, 0.0, np.where(den > 0, quotient, math.inf))


def worst_row_rms(difference: np.ndarray) -> float:
    """The largest RMS over the elements of one batch row (axis 0) of ``difference``."""
    rows = _rows(np.asarray(difference, np.float64))
    return float(np.sqrt(np.mean(rows**2, axis=1)).max()) if rows.size else 0.0


def _rows(values: np.ndarray) -> np.ndarray:
    return values.reshape(1, -1) if values.ndim < 2 else values.reshape(len(values), -1)


def _min_row_cosine(ref: np.ndarray, out: np.ndarray) -> float:
    """Smallest cosine similarity over batch rows; two all-zero rows count as identical (1).

    Computed as ``1 - |u - v|^2 / 2`` on the unit vectors, which is exactly 1 for identical rows
    and keeps its precision near 1, where the gate's floors sit.
    """
    ref, out = _rows(ref), _rows(out)
    ref_norm = np.linalg.norm(ref, axis=1, keepdims=True)
    out_norm = np.linalg.norm(out, axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.linalg.norm(ref / ref_norm - out / out_norm, axis=1)
    cosines = 1.0 - 0.5 * gap**2
    both_zero = (ref_norm[:, 0] == 0) & (out_norm[:, 0] == 0)
    one_zero = (ref_norm[:, 0] == 0) ^ (out_norm[:, 0] == 0)
    cosines = np.where(both_zero, 1.0, np.where(one_zero, 0.0, cosines))
    return float(np.clip(cosines, -1.0, 1.0).min())


def _topk_agreement(ref: np.ndarray, out: np.ndarray, k: int) -> float | None:
    """Share of (N, classes) rows whose k largest classes are the same set; None if not 2-D."""
    if ref.ndim != 2 or ref.shape[0] == 0 or ref.shape[1] < k:
        return None
    ref_top = np.sort(np.argsort(-ref, axis=1, kind="stable")[:, :k], axis=1)
    out_top = np.sort(np.argsort(-out, axis=1, kind="stable")[:, :k], axis=1)
    return float((ref_top == out_top).all(axis=1).mean())


def compare_outputs(
    ref: Mapping[str, np.ndarray],
    out: Mapping[str, np.ndarray],
    tolerance: Tolerance,
    logits: set[str] | None = None,
    scales: Mapping[str, OutputScale | None] | None = None,
) -> CompareResult:
    """Compares every output of ``out`` with the same-named one of ``ref``; the worst result
    counts (a failing one first, then the smallest margin), its ``detail`` naming the output
    when there are several. Top-1/top-5 agreement is kept for the ``logits`` outputs only
    (default: a single rank-2 output). ``scales`` (by output name) turns on the scale-free rule.

    Different output names are status ``"shape"``.
    """
    if set(ref) != set(out):
        detail = f"out has outputs {sorted(out)}, ref has {sorted(ref)}"
        return CompareResult("shape", tolerance, (), "", detail=detail)
    if logits is None:
        logits = {n for n, v in ref.items() if np.ndim(v) == 2} if len(ref) == 1 else set()
    results = []
    for name in ref:
        result = compare(ref[name], out[name], tolerance, (scales or {}).get(name))
        if name not in logits:
            result = replace(result, top1_agreement=None, top5_agreement=None)
        if len(ref) > 1:
            detail = "; ".join(filter(None, (f"output {name!r}", result.detail)))
            result = replace(result, detail=detail)
        results.append(result)
    return min(results, key=_badness)


def _badness(result: CompareResult) -> tuple:
    margin = result.margin if math.isfinite(result.margin) else -math.inf
    return (bool(result), margin)
