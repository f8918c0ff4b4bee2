"""The preprocessing stage breakdown as a Markdown table (from ``bench/bench_stages.py`` runs).

Each stage benchmark (group ``stages``, ``mode`` "stages") times one recipe's preprocessing at one
frame size and keeps its breakdown in ``extra_info["stages"]``, {stage: median ms}: the host
pipeline's ``cv2.resize`` and ``normalise+NCHW``, or an in-graph recipe's ``copy-in``, the Lite
operator types of its forward (``TypeCvt``, ``ResizeForward`` ...) and ``fetch``. This module only
reads those rows; it never runs a model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd

#: The stage mode of the saved rows.
STAGES_MODE = "stages"

#: The host pipeline's recipe name: the baseline of the "x host" column.
HOST = "host"

#: Stages under this many ms in every row are left out of the table (constants, shapes).
SHOWN_MS = 0.01

#: Column order: host stages, then the graph's copy-in, operators, and fetch last.
_FIRST = ("cv2.resize", "normalise+NCHW", "copy-in")
_LAST = ("fetch",)


def stage_rows(benchmarks: Iterable[Mapping]) -> pd.DataFrame:
    """Rows of the stage benchmarks among saved pytest-benchmark entries (``benchmarks`` of a
    saved JSON file): preprocessing, image_size ("HxW"), median (s) and stages ({stage: ms})."""
    records = []
    for bench in benchmarks:
        info = bench.get("extra_info") or {}
        if info.get("mode") != STAGES_MODE or not isinstance(info.get("stages"), Mapping):
            continue
        size = info.get("image_size")
        records.append(
            {
                "mode": STAGES_MODE,
                "preprocessing": info.get("preprocessing"),
                "image_size": f"{size[0]}x{size[1]}" if size and len(size) == 2 else None,
                "median": (bench.get("stats") or {}).get("median"),
                "stages": dict(info["stages"]),
            }
        )
    return pd.DataFrame.from_records(
        records, columns=["mode", "preprocessing", "image_size", "median", "stages"]
    )


def stages_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """The stage breakdown as display strings: one row per recipe x frame size, the timed call's
    median, its ratio to the host pipeline at the same size, the stage (Lite operator type) that
    takes longest, and each stage's ms.

    ``rows`` needs columns ``mode``, ``preprocessing``, ``image_size``, ``median`` (seconds) and
    ``stages`` ({stage: ms}); rows of other modes are ignored, and where a recipe and size appear
    more than once (several runs) the last row counts. ``rest`` is the total less the stages: for
    graphs, Lite's hand-over of the forward to its worker thread and back, which no operator's
    span holds (the stages are medians of separate, profiled rounds, so it can come out
    negative on a noisy machine). Empty when there is no stage row.
    """
    if rows is None or rows.empty or "stages" not in rows:
        return pd.DataFrame()
    picked = rows[(rows["mode"] == STAGES_MODE) & rows["stages"].map(_is_stages)]
    if picked.empty:
        return pd.DataFrame()
    picked = picked.drop_duplicates(["preprocessing", "image_size"], keep="last")
    picked = picked.sort_values("image_size", key=lambda s: s.map(_pixels), kind="stable")
    names = _stage_names(picked["stages"])
    header = ["frame", "recipe", "total ms", "x host", "largest stage", *names, "rest"]
    lines = []
    for row in picked.itertuples(index=False):
        host = picked[(picked["image_size"] == row.image_size) & (picked["preprocessing"] == HOST)]
        total = row.median * 1e3 if _finite(row.median) else None
        host_ms = (
            host["median"].iloc[0] * 1e3 if len(host) and _finite(host["median"].iloc[0]) else None
        )
        ratio = f"{total / host_ms:.2f}x" if total and host_ms else ""
        largest = max(row.stages, key=row.stages.get) if row.stages else ""
        lines.append(
            [
                str(row.image_size or ""),
                str(row.preprocessing),
                _ms(total),
                ratio,
                f"{largest} ({_ms(row.stages[largest])} ms)" if largest else "",
                *(_ms(row.stages.get(name)) for name in names),
                _ms(total - sum(_stage_values(row.stages))) if total else "",
            ]
        )
    return pd.DataFrame(lines, columns=header)


def stages_table(rows: pd.DataFrame) -> str:
    """``stages_frame(rows)`` as a Markdown table; "" when there is no stage row."""
    frame = stages_frame(rows)
    if frame.empty:
        return ""
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _stage_values(stages: Mapping) -> list[float]:
    return [float(ms) for ms in stages.values() if _finite(ms)]


def _is_stages(value: object) -> bool:
    return isinstance(value, Mapping) and bool(value)


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and value == value


def _pixels(size: object) -> int:
    try:
        height, width = str(size).split("x")
        return int(height) * int(width)
    except ValueError:
        return 0


def _stage_names(stages: Iterable[Mapping]) -> list[str]:
    seen: dict[str, float] = {}
    for stage in stages:
        for name, ms in stage.items():
            if _finite(ms):
                seen[name] = max(seen.get(name, 0.0), float(ms))
    shown = [name for name, ms in seen.items() if ms >= SHOWN_MS]
    first = [name for name in _FIRST if name in shown]
    last = [name for name in _LAST if name in shown]
    middle = [name for name in shown if name not in first and name not in last]
    return first + middle + last


def _ms(value: object) -> str:
    if not _finite(value):
        return ""
    return f"{value:.3g}" if abs(value) >= 0.001 else "0"
