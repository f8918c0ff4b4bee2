"""The Lite configuration sweep of ``python -m bench.tune`` (``tuned.json``) as a table and a plot.

Every row of the sweep is one configuration on one variant at one batch size, judged against the
baseline config (``cpu``) on the same variant: its verdict (``ok``, ``not equivalent``,
``crashed``, ``timeout``, ``error``), its speedup over the baseline with the 95 % interval of the
paired timing, and process CPU time over wall time. The recommended config of each variant is
marked; only configurations that are equivalent and faster across their interval can be.
"""

from __future__ import annotations

import pandas as pd

from mge_harness.reports.document import Figure

COLUMNS = (
    "variant",
    "batch",
    "config",
    "verdict",
    "recommended",
    "speedup",
    "low",
    "high",
    "cpu_per_wall",
    "baseline_ms",
    "candidate_ms",
    "rounds",
    "margin",
    "reason",
)


def sweep_frame(tuned: dict) -> pd.DataFrame:
    """One row per sweep entry of every variant in ``tuned`` (read by ``read_tuned``)."""
    rows = []
    for variant, entry in tuned["variants"].items():
        recommended = (entry.get("recommended") or {}).get("config")
        for row in entry["sweep"]:
            if not isinstance(row, dict):
                continue
            interval = row.get("interval") if isinstance(row.get("interval"), list) else []
            equivalence = row.get("equivalence") if isinstance(row.get("equivalence"), dict) else {}
            rows.append(
                {
                    "variant": variant,
                    "batch": row.get("batch"),
                    "config": row.get("config"),
                    "verdict": row.get("verdict"),
                    "recommended": row.get("config") == recommended,
                    "speedup": row.get("speedup"),
                    "low": interval[0] if len(interval) == 2 else None,
                    "high": interval[1] if len(interval) == 2 else None,
                    "cpu_per_wall": row.get("cpu_per_wall"),
                    "baseline_ms": row.get("baseline_ms"),
                    "candidate_ms": row.get("candidate_ms"),
                    "rounds": row.get("rounds"),
                    "margin": equivalence.get("margin"),
                    "reason": row.get("reason") or None,
                }
            )
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for column in ("speedup", "low", "high", "cpu_per_wall", "baseline_ms", "candidate_ms"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def recommended_lines(tuned: dict) -> list[str]:
    """One line per variant: its recommended config and the worst-batch speedup."""
    lines = []
    for variant, entry in tuned["variants"].items():
        chosen = entry.get("recommended")
        if not isinstance(chosen, dict):
            lines.append(f"`{variant}`: none (the baseline config failed its probe)")
            continue
        per_batch = chosen.get("per_batch") or {}
        figures = [
            f"batch {batch} {fig['speedup']:.2f}x [{fig['interval'][0]:.2f}, "
            f"{fig['interval'][1]:.2f}]"
            for batch, fig in per_batch.items()
            if isinstance(fig, dict) and _interval_known(fig)
        ]
        detail = ", ".join(figures) or "no configuration beat the baseline"
        lines.append(f"`{variant}`: `{chosen.get('config')}` ({detail})")
    return lines


def _interval_known(figures: dict) -> bool:
    interval = figures.get("interval")
    return (
        isinstance(figures.get("speedup"), (int, float))
        and isinstance(interval, list)
        and len(interval) == 2
        and all(isinstance(v, (int, float)) for v in interval)
    )


def sweep_figure(frame: pd.DataFrame, title: str, name: str = "tune_sweep.png") -> Figure | None:
    """A panel per variant: each configuration's speedup over the baseline (horizontal, 95 %
    interval as error bars, a marker per batch size), from zero, a dashed line at 1. Configs
    that were not timed are listed on the axis with their verdict."""
    if frame.empty:
        return None
    from mge_harness.reports.plots import MARKERS, _figure, _png

    variants = list(dict.fromkeys(frame["variant"]))
    figure, axes = _figure(len(variants), 1)
    for ax, variant in zip(axes, variants, strict=True):
        rows = frame[frame["variant"] == variant]
        configs = list(dict.fromkeys(rows["config"]))
        position = {config: i for i, config in enumerate(configs)}
        batches = sorted(int(b) for b in rows["batch"].dropna().unique())
        for index, batch in enumerate(batches):
            timed = rows[(rows["batch"] == batch) & (rows["verdict"] == "ok")]
            timed = timed[timed["speedup"].notna()]
            offset = (index - (len(batches) - 1) / 2) * 0.15
            y = [position[c] + offset for c in timed["config"]]
            low = (timed["speedup"] - timed["low"]).clip(lower=0).fillna(0)
            high = (timed["high"] - timed["speedup"]).clip(lower=0).fillna(0)
            ax.errorbar(timed["speedup"], y, xerr=[low, high], fmt=MARKERS[index % len(MARKERS)],
                        capsize=3, linestyle="none", label=f"batch {batch}")  # fmt: skip
        labels = []
        for config in configs:
            verdicts = set(rows.loc[rows["config"] == config, "verdict"])
            shown = "" if verdicts == {"ok"} else f" ({', '.join(sorted(verdicts - {'ok'}))})"
            mark = " *" if rows.loc[rows["config"] == config, "recommended"].any() else ""
            labels.append(f"{config}{shown}{mark}")
        ax.set_yticks(range(len(configs)), labels)
        ax.invert_yaxis()
        ax.axvline(1.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_xlim(left=0)
        ax.set(xlabel="speedup over the baseline config (x)", title=f"{variant} (* recommended)")
        ax.grid(True, axis="x", alpha=0.3)
        ax.legend(fontsize="small")
    figure.suptitle(title)
    return Figure(name, _png(figure), title)
