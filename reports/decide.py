"""What to ship: the fastest configuration that passed the gate, per batch size, and the headline
ratios (fused vs external, fusion on vs off, harness overhead) as one figure with an interval each.

Everything here works on the current view of the tidy table (:func:`reports.table.current_view`)
joined with the gate (``equivalence``, ``expected_failure``, ``gate_margin`` columns).

A row is *eligible* when it was measured, its variant's gate verdict is ``pass`` and the manifest
does not mark the variant an expected failure (such variants, e.g. ``identity-warp``, are known
to be wrong and are never recommended, whatever the gate says). Speed is compared per image
(median seconds per call / batch) in one timing mode: ``e2e`` (raw frames in, logits out, what a
deployment pays) when the runs have it, else ``model``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import pandas as pd

from mge_harness.reports.formatting import significant
from mge_harness.reports.intervals import Ratio, ratio
from mge_harness.reports.noise import cause

MODE_PREFERENCE = ("e2e", "model")
"""The timing mode recommendations and rankings use: the first one the runs have."""


def decision_mode(view: pd.DataFrame) -> str | None:
    """The first of :data:`MODE_PREFERENCE` the measured rows have, else None."""
    modes = set(view.loc[view["status"] == "ok", "mode"].dropna())
    return next((mode for mode in MODE_PREFERENCE if mode in modes), None)


def expected_failure(view: pd.DataFrame) -> pd.Series:
    """True for rows whose variant the manifest marks as an expected failure."""
    if "expected_failure" not in view:
        return pd.Series(False, index=view.index)
    return view["expected_failure"].notna() & (view["expected_failure"] != "")


def eligible(view: pd.DataFrame) -> pd.Series:
    """Measured, passed the gate, and not an expected failure."""
    passed = view["equivalence"] == "pass" if "equivalence" in view else False
    return (view["status"] == "ok") & view["variant"].notna() & passed & ~expected_failure(view)


class Setting(NamedTuple):
    """What a decision is made for: a batch size and, in ``e2e`` mode, the frame size (frames
    of different sizes are never compared with each other)."""

    batch: int
    image_size: str | None = None

    @property
    def label(self) -> str:
        return f"batch {self.batch}" + (f", {self.image_size}" if self.image_size else "")


def _setting_keys(mode: str | None) -> list[str]:
    return ["batch", "image_size"] if mode == "e2e" else ["batch"]


def _settings(rows: pd.DataFrame, mode: str | None):
    """``(Setting, rows)`` per batch size (and frame size in e2e), in order."""
    keys = _setting_keys(mode)
    for values, group in rows.groupby(keys, sort=True, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        size = values[1] if len(values) > 1 and isinstance(values[1], str) else None
        yield Setting(int(values[0]), size), group


def per_image_ms(rows: pd.DataFrame) -> pd.Series:
    return rows["median"] * 1e3 / rows["batch"].astype(float)


def _samples(row: pd.Series):
    samples = row.get("samples")
    return samples if samples is not None and not isinstance(samples, float) else None


def row_ratio(numerator: pd.Series, denominator: pd.Series) -> Ratio:
    """``median(numerator) / median(denominator)`` of two table rows, with its interval."""
    return group_ratio([(numerator, denominator)])


def group_ratio(pairs: Sequence[tuple[pd.Series, pd.Series]]) -> Ratio:
    """The geometric mean of the pairs' median ratios (see :mod:`reports.intervals`)."""
    return ratio(
        [(_samples(top), _samples(bottom)) for top, bottom in pairs],
        medians=[(top["median"], bottom["median"]) for top, bottom in pairs],
    )


@dataclass(frozen=True)
class Choice:
    """The recommendation at one batch size (and frame size)."""

    setting: Setting
    mode: str
    row: pd.Series
    versus_external: Ratio | None
    runner_up: pd.Series | None

    def sentence(self) -> str:
        """``ship `variant` on `device`: 24.1 ms/image e2e, 1.12x (95 % CI ...) the speed of
        external, gate margin 0.93; next ...``."""
        row = self.row
        text = (
            f"ship `{row['variant']}` on `{row['device']}`: "
            f"{significant(row['median'] * 1e3 / self.setting.batch, 3)} ms/image {self.mode}"
        )
        if self.versus_external is not None:
            text += f", {self.versus_external} the speed of external"
        elif row["preprocessing"] == "external":
            text += ", the external pipeline itself"
        if pd.notna(row.get("gate_margin")):
            text += f", gate margin {row['gate_margin']:.2f}"
        if bool(row.get("noisy", False)):
            text += f" (noisy, {cause(row)}: measure again before shipping)"
        if self.runner_up is not None:
            other = self.runner_up
            text += (
                f"; next `{other['variant']}` on `{other['device']}` at "
                f"{other['median'] / row['median']:.2f}x the time"
            )
        return text + "."


def recommendations(view: pd.DataFrame) -> list[Choice]:
    """One :class:`Choice` per batch size (and e2e frame size) that has an eligible row in the
    decision mode."""
    mode = decision_mode(view)
    if mode is None:
        return []
    candidates = view[eligible(view) & (view["mode"] == mode) & view["batch"].notna()]
    choices = []
    for setting, rows in _settings(candidates, mode):
        ranked = rows.assign(_ms=per_image_ms(rows)).sort_values("_ms", kind="stable")
        best = ranked.iloc[0]
        choices.append(
            Choice(
                setting=setting,
                mode=mode,
                row=best,
                versus_external=_versus_external(view, best),
                runner_up=ranked.iloc[1] if len(ranked) > 1 else None,
            )
        )
    return choices


def _versus_external(view: pd.DataFrame, best: pd.Series) -> Ratio | None:
    """Speed of ``best`` relative to the external variant of the same model, cbn fusion, device,
    mode, batch and frame size (external median / best median: above 1 the recommendation is
    faster)."""
    if best["preprocessing"] == "external":
        return None
    same = (
        (view["status"] == "ok")
        & (view["preprocessing"] == "external")
        & (view["model"] == best["model"])
        & (view["fuse_cbn"] == best["fuse_cbn"])
        & (view["device"] == best["device"])
        & (view["mode"] == best["mode"])
        & (view["batch"] == best["batch"])
        & (view["image_size"].fillna("") == (best["image_size"] or ""))
    )
    if not same.any():
        return None
    return row_ratio(view[same].iloc[-1], best)


@dataclass(frozen=True)
class Headline:
    """A ratio per batch size (and e2e frame size) between two sides of one column, matched
    on ``by`` and the frame size."""

    title: str
    column: str
    numerator: object
    denominator: object
    by: tuple[str, ...]
    meaning: str
    modes: tuple[str, ...] | None = None  # None: the decision mode only

    def per_batch(self, view: pd.DataFrame) -> list[tuple[Setting, Ratio]]:
        """The geometric-mean ratio over every matched pair, one per batch size (and frame
        size, for the e2e mode)."""
        measured = view[(view["status"] == "ok") & view["variant"].notna()]
        modes = self.modes or (decision_mode(view),)
        measured = measured[measured["mode"].isin(modes) & ~expected_failure(measured)]
        top = measured[measured[self.column] == self.numerator]
        bottom = measured[measured[self.column] == self.denominator]
        keys = [*self.by, "batch", "image_size"]  # merge matches a blank size with a blank one
        pairs = top.merge(bottom, on=keys, suffixes=("_n", "_d"))
        result = []
        mode = "e2e" if "e2e" in modes else None
        for setting, rows in _settings(pairs, mode):
            matched = [(_side(row, "_n"), _side(row, "_d")) for _, row in rows.iterrows()]
            result.append((setting, group_ratio(matched)))
        return result


def _side(row: pd.Series, suffix: str) -> pd.Series:
    return pd.Series({"median": row[f"median{suffix}"], "samples": row[f"samples{suffix}"]})


HEADLINES = (
    Headline(
        title="Fused vs external",
        column="preprocessing",
        numerator="external",
        denominator="fused",
        by=("model", "fuse_cbn", "device", "mode"),
        meaning="external time / fused time; above 1 fused is faster",
    ),
    Headline(
        title="Fusion on vs off",
        column="fuse_cbn",
        numerator=False,
        denominator=True,
        by=("model", "preprocessing", "device", "mode"),
        meaning="cbn-off time / cbn-on time; above 1 the conv-bias fusion is faster",
    ),
    Headline(
        title="Harness overhead",
        column="mode",
        numerator="model",
        denominator="raw",
        by=("variant", "device"),
        meaning="model-mode time / raw Lite loop time; above 1 is what the harness adds",
        modes=("model", "raw"),
    ),
)


def ranking(view: pd.DataFrame) -> pd.DataFrame:
    """Every measured variant x device in the decision mode, per batch size (and e2e frame
    size: column ``setting``), fastest first.

    ``x_fastest`` is the row's time over the fastest eligible row's in the same setting;
    ``rank`` counts eligible rows only (expected failures and gate failures have none).
    """
    mode = decision_mode(view)
    rows = view[(view["status"] == "ok") & view["variant"].notna() & (view["mode"] == mode)]
    rows = rows[rows["batch"].notna()].assign(
        per_image_ms=lambda f: per_image_ms(f),
        eligible=lambda f: eligible(f),
        expected_failure_flag=lambda f: expected_failure(f),
    )
    parts = []
    for setting, batch_rows in _settings(rows, mode):
        batch_rows = batch_rows.sort_values("per_image_ms", kind="stable")
        batch_rows = batch_rows.assign(setting=setting.label)
        fastest = batch_rows.loc[batch_rows["eligible"], "median"].min()
        batch_rows = batch_rows.assign(x_fastest=batch_rows["median"] / fastest)
        rank = batch_rows["eligible"].cumsum().where(batch_rows["eligible"])
        parts.append(batch_rows.assign(rank=rank))
    if not parts:
        return rows.assign(x_fastest=[], rank=[], setting=[])
    return pd.concat(parts, ignore_index=True)
