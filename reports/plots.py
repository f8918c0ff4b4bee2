"""PNG plots of the current view: latency and throughput against batch, and speedups with bands.

Uses matplotlib's object API (``matplotlib.figure.Figure`` renders through Agg without pyplot), so
no display and no global pyplot state are involved. matplotlib is imported only when plotting.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd

from mge_harness.reports.document import Figure
from mge_harness.reports.speedups import Pairing
from mge_harness.reports.table import device_label


def _measured(view: pd.DataFrame) -> pd.DataFrame:
    keep = (view["status"] == "ok") & view["variant"].notna() & view["batch"].notna()
    return view[keep]


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
"""One marker style per saved run in a plot, in run order (cycled past eight runs)."""

EXPECTED_FAILURE_STYLE = {"color": "0.6", "linestyle": "--"}
"""Expected-failure variants are drawn grey and dashed: known wrong, not a candidate."""


def per_device_figures(
    view: pd.DataFrame, metric: str, label: str, stem: str, scale: float = 1.0
) -> list[Figure]:
    """One figure per device: ``metric`` x ``scale`` against batch, a panel per timing mode, a line
    per variant, one marker style per run. ``median`` gets interquartile error bars and
    ``images_per_s`` the same quartiles turned into images/s; the y-axis starts at zero. The title
    names the device, the runs and their dates. Files: ``<stem>_<device>.png``.
    """
    figures = []
    for device, rows in _measured(view).groupby("device", dropna=False, sort=True):
        name = device_label(device)
        file_name = f"{stem}_{_slug(name)}.png"
        title = f"{label} on {name}: {runs_and_dates(rows)}"
        figures.append(_device_figure(rows, metric, scale, label, file_name, title))
    return figures


def runs_and_dates(rows: pd.DataFrame) -> str:
    """``run A, B (2026-01-01 to 2026-01-02)``: the runs ``rows`` come from and their dates."""
    runs = sorted(rows["run"].dropna().unique())
    dates = sorted({str(d)[:10] for d in rows["datetime"].dropna() if str(d)})
    when = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}" if dates else "undated"
    return (
        f"run {', '.join(runs)} ({when})"
        if len(runs) == 1
        else (f"runs {', '.join(runs)} ({when})")
    )


def _errors(lines: pd.DataFrame, metric: str, values: np.ndarray, scale: float):
    """Interquartile error bars for ``median`` and ``images_per_s``, else None."""
    q1, q3 = _floats(lines["q1"]), _floats(lines["q3"])
    if metric == "median":
        low, high = q1 * scale, q3 * scale
    elif metric == "images_per_s":
        batch = _floats(lines["batch"])
        low, high = batch / q3 * scale, batch / q1 * scale
    else:
        return None
    return np.vstack([values - low, high - values])


def _device_figure(
    rows: pd.DataFrame, metric: str, scale: float, label: str, name: str, title: str
) -> Figure:
    return Figure(name, _png(device_plot(rows, metric, scale, label, title)), title)


def device_plot(rows: pd.DataFrame, metric: str, scale: float, label: str, title: str):
    """The matplotlib figure behind :func:`per_device_figures`, for one device's rows."""
    from matplotlib.lines import Line2D

    modes = sorted(rows["mode"].fillna("-").unique())
    runs = sorted(rows["run"].dropna().unique())
    marker = {run: MARKERS[i % len(MARKERS)] for i, run in enumerate(runs)}
    failing = _expected_failures(rows)
    figure, axes = _figure(1, len(modes))
    for ax, mode in zip(axes, modes, strict=True):
        for variant, lines in rows[rows["mode"].fillna("-") == mode].groupby("variant"):
            lines = lines.sort_values("batch")
            values = _floats(lines[metric]) * scale
            batch = _floats(lines["batch"])
            style = EXPECTED_FAILURE_STYLE if variant in failing else {}
            text = f"{variant} (expected failure)" if variant in failing else variant
            (line,) = ax.plot(batch, values, label=text, **style)
            errors = _errors(lines, metric, values, scale)
            if errors is not None:
                ax.errorbar(batch, values, yerr=errors, fmt="none", capsize=3,
                            ecolor=line.get_color())  # fmt: skip
            for run, points in lines.groupby("run"):
                ax.plot(_floats(points["batch"]), _floats(points[metric]) * scale,
                        linestyle="none", marker=marker[run], color=line.get_color())  # fmt: skip
        _batch_axis(ax, rows["batch"])
        ax.set_ylim(bottom=0)
        ax.set(title=f"mode: {mode}", ylabel=label)
        handles, _ = ax.get_legend_handles_labels()
        if len(runs) > 1:
            handles += [
                Line2D([], [], color="black", linestyle="none", marker=marker[r], label=f"run {r}")
                for r in runs
            ]
        ax.legend(handles=handles, fontsize="small")
    figure.suptitle(title)
    return figure


def _expected_failures(rows: pd.DataFrame) -> set:
    if "expected_failure" not in rows:
        return set()
    marked = rows["expected_failure"].notna() & (rows["expected_failure"] != "")
    return set(rows.loc[marked, "variant"])


def _floats(column: pd.Series):
    return column.to_numpy(dtype=float)


def speedup_figure(
    pairings: list[tuple[Pairing, pd.DataFrame]], name: str, alt: str
) -> Figure | None:
    """A row of panels per pairing, a panel per timing mode: speedup against batch, the noise
    band shaded, a dashed line at 1. Lines are labelled by the pairing's other keys that vary."""
    grid = [
        (pairing, list(ratios[ratios["batch"].notna()].groupby("mode", dropna=False)))
        for pairing, ratios in pairings
    ]
    grid = [(pairing, modes) for pairing, modes in grid if modes]
    if not grid:
        return None
    columns = max(len(modes) for _, modes in grid)
    figure, axes = _figure(len(grid), columns)
    for row, (pairing, modes) in enumerate(grid):
        for column in range(columns):
            ax = axes[row * columns + column]
            if column >= len(modes):
                ax.set_visible(False)
                continue
            mode, rows = modes[column]
            _speedup_panel(ax, pairing, rows)
            ax.set_title(f"{pairing.title}\nmode: {mode}", fontsize="medium")
    figure.suptitle(alt)
    return Figure(name, _png(figure), alt)


def _speedup_panel(ax, pairing: Pairing, rows: pd.DataFrame) -> None:
    series = [c for c in pairing.by if c not in ("batch", "mode") and rows[c].nunique() > 1]
    groups = rows.groupby(series, dropna=False, sort=True) if series else [((), rows)]
    for labels, lines in groups:
        lines = lines.sort_values("batch")
        batch = _floats(lines["batch"])
        values = labels if isinstance(labels, tuple) else (labels,)
        text = " ".join(_series_label(c, v) for c, v in zip(series, values, strict=True))
        (line,) = ax.plot(batch, _floats(lines["speedup"]), marker="o", label=text or None)
        low, high = _floats(lines["band_low"]), _floats(lines["band_high"])
        ax.fill_between(batch, low, high, color=line.get_color(), alpha=0.15)
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    _batch_axis(ax, rows["batch"])
    ax.set_ylabel(f"speedup ({pairing.reference_name} / {pairing.candidate_name})")
    if series:
        ax.legend(fontsize="small")


def _series_label(column: str, value: object) -> str:
    if pd.isna(value):
        return ""
    if column == "fuse_cbn":
        return "cbn-on" if bool(value) else "cbn-off"
    return str(value)


def _figure(rows: int, columns: int):
    from matplotlib.figure import Figure as MplFigure

    figure = MplFigure(figsize=(6.0 * columns, 4.2 * rows), layout="constrained")
    return figure, list(figure.subplots(rows, columns, squeeze=False).flat)


def _batch_axis(ax, batches: pd.Series) -> None:
    ticks = sorted(int(b) for b in batches.dropna().unique())
    if len(ticks) > 1:
        ax.set_xscale("log", base=2)
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel("batch")
    ax.grid(True, alpha=0.3)


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def _slug(text: object) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text))
