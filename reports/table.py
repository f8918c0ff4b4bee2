"""The one tidy table every report is rendered from.

A row per saved run x benchmark, which for our suites means run x variant x batch x device x timing
mode (the fields come from the ``extra_info`` the bench suites set). Benchmarks from other suites,
without ``extra_info``, keep their pytest name in ``benchmark`` and blanks elsewhere. Configurations
that crashed, timed out or saved no timings keep their row with ``status`` != ``"ok"`` and blank
statistics.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from mge_harness.reports.defaults import NOISY_CV
from mge_harness.reports.gate import variant_summary
from mge_harness.reports.sources import SavedRun
from mge_harness.reports.stats import STAT_FIELDS, timing_stats

PROVENANCE = (
    "host",
    "commit",
    "harness_version",
    "megengine_version",
    "lite_version",
    "cpu",
    "threads",
    "cuda",
)

KEY = ("benchmark", "device", "mode", "batch", "image_size")
"""What identifies one measured configuration across runs."""

COLUMNS = (
    "run",
    "datetime",
    *PROVENANCE,
    "key",
    *KEY,
    "variant",
    "model",
    "preprocessing",
    "fuse_cbn",
    "name",
    "fullname",
    "group",
    "status",
    "reason",
    "timings",
    *STAT_FIELDS,
    "cv",
    "noisy",
    "images_per_s",
    "cpu_per_wall",
    "file",
)


def build_table(
    runs: Iterable[SavedRun], gate: dict | None = None, noise_cv: float = NOISY_CV
) -> pd.DataFrame:
    """The tidy table of ``runs``, with the gate's per-variant verdict and worst metrics joined.

    ``noise_cv`` is the coefficient of variation above which a row is flagged ``noisy``; defaults
    to :data:`reports.defaults.NOISY_CV`. The raw timings ride along in a ``samples`` column (arrays,
    or None) for significance tests; drop it before writing CSV.
    """
    records = [_record(run, bench) for run in runs for bench in run.benchmarks]
    table = pd.DataFrame.from_records(records, columns=[*COLUMNS, "samples"])
    table["batch"] = table["batch"].astype("Int64")
    table["rounds"] = table["rounds"].astype("Int64")
    table["images_per_s"] = table["batch"].astype(float) / table["median"]
    table["noisy"] = table["cv"] > noise_cv
    table["key"] = [_key_label(row) for row in table[list(KEY)].itertuples(index=False)]
    return join_gate(table, gate)


def _record(run: SavedRun, bench: dict) -> dict:
    info = bench.get("extra_info") if isinstance(bench.get("extra_info"), dict) else {}
    status = str(info.get("status", "ok"))
    stats = timing_stats(bench.get("stats")) if status == "ok" else None
    reason = info.get("reason") or info.get("error")
    if status == "ok" and stats is None:
        status, reason = "invalid", "no timing statistics in the saved file"
    return {
        "run": run.label,
        "datetime": run.datetime,
        **run.provenance(),
        "benchmark": info.get("variant") or bench["name"],
        "device": info.get("device"),
        "mode": info.get("mode"),
        "batch": info.get("batch") if isinstance(info.get("batch"), int) else None,
        "image_size": _size_label(info.get("image_size")),
        "variant": info.get("variant"),
        "model": info.get("model"),
        "preprocessing": info.get("preprocessing"),
        "fuse_cbn": info.get("fuse_conv_bias_nonlinearity"),
        "name": bench["name"],
        "fullname": bench.get("fullname") or bench["name"],
        "group": bench.get("group"),
        "status": status,
        "reason": reason,
        "file": str(run.path),
        "cpu_per_wall": _number(info.get("cpu_per_wall")),
        **(stats or {"samples": None}),
    }


def _number(value: object) -> float | None:
    """A finite number from a saved run's ``extra_info``, else None (older runs have none)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
        return float(value)
    return None


def device_label(device: object) -> str:
    """How a device shows in headings and file names; ``unspecified`` for runs without one."""
    return "unspecified" if device is None or pd.isna(device) else str(device)


def _size_label(size: object) -> str | None:
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return f"{size[0]}x{size[1]}"
    return None


def _key_label(row: tuple) -> str:
    benchmark, device, mode, batch, size = row
    batch = None if pd.isna(batch) else f"b={batch}"
    details = " ".join(str(part) for part in (device, mode, batch, size) if _known(part))
    return f"{benchmark} [{details}]" if details else str(benchmark)


def _known(value: object) -> bool:
    return value is not None and not (isinstance(value, float) and pd.isna(value))


def join_gate(table: pd.DataFrame, gate: dict | None) -> pd.DataFrame:
    """``table`` with the gate's per-variant columns (blank for variants the gate did not check)."""
    return table.merge(variant_summary(gate), on="variant", how="left")


def current_view(table: pd.DataFrame) -> pd.DataFrame:
    """The newest row of every configuration (:data:`KEY`), whichever run it came from.

    This is what the report's latency tables, speedups and plots show; ``summary.csv`` keeps every
    run. Runs are ordered by their saved ``datetime``, then file path.
    """
    ordered = table.sort_values(["datetime", "file"], kind="stable")
    return ordered.drop_duplicates(list(KEY), keep="last").reset_index(drop=True)
