"""Write the report files: ``report.md``, ``report.html``, ``summary.csv`` and PNG plots.

Every file is written atomically (a temporary file in the same folder, then ``os.replace``), so a
reader never sees a half-written report and an interrupted run leaves the previous one intact.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mge_harness.reports import defaults
from mge_harness.reports.compare import Comparison
from mge_harness.reports.content import ReportInputs, comparison_sections, sections
from mge_harness.reports.document import Figure, Section, to_html, to_markdown
from mge_harness.reports.errors import ReportError
from mge_harness.reports.sources import load_runs, read_gate
from mge_harness.reports.table import build_table

TITLE = "MegEngine variant benchmarks"


@dataclass(frozen=True)
class WrittenReport:
    """What :func:`write_report` produced: the files, the warnings and the tidy table."""

    files: tuple[Path, ...]
    warnings: tuple[str, ...]
    table: pd.DataFrame


def write_report(
    benchmarks: Sequence[Path | str] = (defaults.STORAGE,),
    gate: Path | str | None = None,
    out: Path | str = defaults.OUT,
    noise_cv: float = defaults.NOISY_CV,
    baseline_device: str = defaults.BASELINE_DEVICE,
) -> WrittenReport:
    """Read saved runs and the gate, and write the report files into ``out``.

    ``benchmarks``: files or folders of saved runs, scanned recursively; defaults to
    ``.benchmarks``. ``gate``: the gate result to show; defaults to ``results/gate.json`` if it
    exists (an explicit path must exist). ``out`` defaults to ``results``. ``noise_cv``: CV above
    which a row is flagged noisy. ``baseline_device``: the device other devices' speedups are
    relative to; defaults to ``cpu``.
    """
    loaded = load_runs(benchmarks)
    gate_data, gate_note, gate_warnings = _gate(gate)
    inputs = ReportInputs(
        table=build_table(loaded.runs, gate_data, noise_cv),
        runs=loaded.runs,
        gate=gate_data,
        gate_note=gate_note,
        skipped=loaded.skipped + gate_warnings,
        noise_cv=noise_cv,
        baseline_device=baseline_device,
    )
    csv = inputs.table.drop(columns="samples").to_csv(index=False)
    files = write_document(Path(out), "report", TITLE, sections(inputs))
    files.append(write_atomic(Path(out) / "summary.csv", csv.encode()))
    return WrittenReport(tuple(files), inputs.skipped, inputs.table)


def _gate(path: Path | str | None) -> tuple[dict | None, str, tuple[str, ...]]:
    if path is not None:
        return read_gate(path), f"from {path}", ()
    if not defaults.GATE.exists():
        return None, f"no {defaults.GATE}", ()
    try:
        return read_gate(defaults.GATE), f"from {defaults.GATE}", ()
    except ReportError as exc:
        return None, f"{defaults.GATE} unreadable", (f"skipped {exc}",)


def _comparison_title(comparison: Comparison) -> str:
    return f"Benchmark comparison: {comparison.candidate} vs {comparison.base}"


def comparison_markdown(comparison: Comparison) -> str:
    """The comparison as Markdown, exactly as ``compare.md`` holds it."""
    return to_markdown(_comparison_title(comparison), comparison_sections(comparison))


def write_comparison(comparison: Comparison, out: Path | str = defaults.OUT) -> list[Path]:
    """Write ``compare.md``, ``compare.html`` and ``compare.csv`` for a comparison into ``out``."""
    parts = comparison_sections(comparison)
    files = write_document(Path(out), "compare", _comparison_title(comparison), parts)
    csv = comparison.table.to_csv(index=False)
    files.append(write_atomic(Path(out) / "compare.csv", csv.encode()))
    return files


def write_document(out: Path, stem: str, title: str, parts: list[Section]) -> list[Path]:
    """``<stem>.md``, ``<stem>.html`` and every figure the sections hold, written into ``out``."""
    figures = [block for part in parts for block in part.blocks if isinstance(block, Figure)]
    files = [write_atomic(out / figure.name, figure.png) for figure in figures]
    files.append(write_atomic(out / f"{stem}.md", to_markdown(title, parts).encode()))
    files.append(write_atomic(out / f"{stem}.html", to_html(title, parts).encode()))
    return files


def write_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``; returns ``path``.

    ReportError when the folder cannot be created or written (a wrong ``--out``).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise ReportError(
            f"{path.parent}: cannot write the report there ({exc.strerror})"
        ) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; reports are meant to be shared
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
