"""``python -m reports``: the benchmark report, or a comparison of two saved runs.

Exit status: 0 on success, 1 when ``--compare`` finds a regression that fails a ``--fail-on``
rule, 2 on a user mistake (printed as one ``error: ...`` line on stderr, no traceback).
Only argparse and the standard library are imported before the arguments are parsed, so
``--help`` is instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mge_harness.reports import defaults
from mge_harness.reports.errors import ReportError, require_reports_extra

EPILOG = """\
examples:
  python -m reports                                  # .benchmarks/ + results/gate.json -> results/
  python -m reports --benchmarks cpu-runs/ cuda-runs/ --out results/devices
  python -m reports --compare 0001 0002 --fail-on median:10%

--fail-on rules are FIELD:N% (relative) or FIELD:SECONDS (absolute), FIELD one of
min max mean median stddev iqr p90 p99. A rule fails only for a slowdown that is larger than its
threshold and significant (two-sided Mann-Whitney U on the raw timings, p < --alpha); pick
thresholds above the run-to-run drift of your machine (10% or more for medians on shared CI).
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of usage + message
        raise ReportError(f"{message} (see python -m reports --help)")


def parser() -> argparse.ArgumentParser:
    """The command-line options; every default is stated in its help text."""
    p = _Parser(
        prog="python -m reports",
        description="Build tables and plots from saved pytest-benchmark runs and gate.json.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--benchmarks",
        nargs="+",
        type=Path,
        default=[defaults.STORAGE],
        metavar="PATH",
        help=f"saved runs: files, or folders scanned recursively (default: {defaults.STORAGE})",
    )
    p.add_argument(
        "--gate",
        type=Path,
        metavar="FILE",
        help=f"gate result to show (default: {defaults.GATE} when it exists)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=defaults.OUT,
        metavar="DIR",
        help=f"folder for the report files (default: {defaults.OUT})",
    )
    p.add_argument(
        "--noise-cv",
        type=float,
        default=defaults.NOISY_CV,
        metavar="FRACTION",
        help=f"flag rows whose stddev/mean exceeds this as noisy (default: {defaults.NOISY_CV})",
    )
    p.add_argument(
        "--baseline-device",
        default=defaults.BASELINE_DEVICE,
        metavar="NAME",
        help=f"device other devices' speedups are relative to (default: {defaults.BASELINE_DEVICE})",
    )
    p.add_argument(
        "--compare",
        nargs=2,
        metavar=("BASE", "CAND"),
        help="compare two saved runs: run numbers such as 0001 (or MACHINE/0001) or file paths",
    )
    p.add_argument(
        "--fail-on",
        action="append",
        default=[],
        metavar="RULE",
        help="with --compare: exit 1 on a significant regression beyond RULE, e.g. median:10%%",
    )
    p.add_argument(
        "--require-gate-pass",
        action="store_true",
        help="after writing the report, exit 1 unless the gate result exists and passed "
        "(the main job uses it so that a failed gate still gets its report)",
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=defaults.ALPHA,
        help=f"with --compare: Mann-Whitney U significance level (default: {defaults.ALPHA})",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    try:
        args = parser().parse_args(argv)
        require_reports_extra()
        return _compare(args) if args.compare else _report(args)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _report(args: argparse.Namespace) -> int:
    if args.fail_on:
        raise ReportError("--fail-on needs --compare BASE CAND")
    from mge_harness.reports.build import write_report

    written = write_report(
        benchmarks=args.benchmarks,
        gate=args.gate,
        out=args.out,
        noise_cv=args.noise_cv,
        baseline_device=args.baseline_device,
    )
    for warning in written.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {len(written.files)} files to {args.out}: {args.out / 'report.md'}")
    return _gate_status(args) if args.require_gate_pass else 0


def _gate_status(args: argparse.Namespace) -> int:
    from mge_harness.reports.sources import read_gate

    path = args.gate or defaults.GATE
    if not Path(path).is_file():
        print(f"error: {path}: no gate result; run pytest equivalence/ first", file=sys.stderr)
        return 1
    if read_gate(path).get("passed") is not True:
        print(f"gate FAILED: see {path} and {args.out / 'report.md'}", file=sys.stderr)
        return 1
    return 0


def _compare(args: argparse.Namespace) -> int:
    from mge_harness.reports.build import comparison_markdown, write_comparison
    from mge_harness.reports.compare import compare_runs
    from mge_harness.reports.rules import RegressionRule
    from mge_harness.reports.sources import find_run, read_run

    rules = [RegressionRule.parse(text) for text in args.fail_on]
    base, candidate = (read_run(find_run(ref, args.benchmarks)) for ref in args.compare)
    comparison = compare_runs(base, candidate, rules, alpha=args.alpha)
    write_comparison(comparison, args.out)
    print(comparison_markdown(comparison), end="")
    return 0 if comparison else 1
