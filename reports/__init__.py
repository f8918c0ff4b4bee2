"""Reports: turn saved benchmark runs and the equivalence gate into tables, plots and a verdict.

Reads files only (pytest-benchmark storage plus ``gate.json``) and never runs a model, so it imports
neither ``exporters`` nor ``equivalence`` nor ``bench``. Heavy libraries (pandas, scipy, matplotlib)
are imported by the submodules that need them, not here, so ``python -m reports --help`` stays fast.

Entry points: ``python -m reports`` (see :mod:`reports.cli`), :func:`reports.build.write_report`,
:func:`reports.compare.compare_runs`.
"""

from mge_harness.reports.errors import ReportError

__all__ = ["ReportError"]
