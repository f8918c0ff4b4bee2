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


def per_device_figures(
    view: pd.DataFrame, metric: str, label: str, stem: str, scale: float = 1.0
) -> list[Figure]:
    """One figure per device: ``metric`` x ``scale`` against batch, a panel per timing mode, a line
    per variant. Latency (``median``) gets interquartile error bars. Files: ``<stem>_<device>.png``.
    """
    figures = []
    for device, rows in _measured(view).groupby("device", dropna=False, sort=True):
        name = device_label(device)
        file_name = f"{stem}_{_slug(name)}.png"
        figures.append(_device_figure(rows, metric, scale, label, file_name, f"{label}, {name}"))
    return figures


def _device_figure(
    rows: pd.DataFrame, metric: str, scale: float, label: str, name: str, alt: str
) -> Figure:
    modes = sorted(rows["mode"].fillna("-").unique())
    figure, axes = _figure(1, len(modes))
    for ax, mode in zip(axes, modes, strict=True):
        for variant, lines in rows[rows["mode"].fillna("-") == mode].groupby("variant"):
            lines = lines.sort_values("batch")
            values = _floats(lines[metric]) * scale
            errors = None
            if metric == "median":
                low, high = _floats(lines["q1"]) * scale, _floats(lines["q3"]) * scale
                errors = np.vstack([values - low, high - values])
            batch = _floats(lines["batch"])
            ax.errorbar(batch, values, yerr=errors, marker="o", capsize=3, label=variant)
        _batch_axis(ax, rows["batch"])
        ax.set(title=f"mode: {mode}", ylabel=label)
        ax.legend(fontsize="small")
    return Figure(name, _png(figure), alt)


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
