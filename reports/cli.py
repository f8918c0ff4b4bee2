"""``python -m reports``: the benchmark report, or a comparison of two saved runs.

Exit status: 0 on success, 1 when ``--compare`` finds a regression that fails a ``--fail-on``
rule, 2 on a user mistake (printed as one ``error: ...`` line on stderr, no traceback), 130 on
Ctrl-C (``error: interrupted``; report files are written atomically, so none is left half done).
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
  python -m reports --paired 0003 --fail-on median:10%   # a run of pytest bench/ --baseline-release DIR

--fail-on rules are FIELD:N% (relative) or FIELD:SECONDS (absolute), FIELD one of
min max mean median stddev iqr p90 p99. A rule fails only for a slowdown that is larger than its
threshold and significant (two-sided Mann-Whitney U on the raw timings, p < --alpha); pick
thresholds above the run-to-run drift of your machine (10% or more for medians on shared CI).
--compare divides the candidate's timings by the machine-speed canary ratio of the two runs
(bench.canary) and prints how much drift the canary saw. With --paired, a median rule fails a
paired ratio only when its whole 95% bootstrap interval is beyond the limit.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of usage + message
        raise ReportError(f"{message} (see python -m reports --help)")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction between 0 and 1")
    return value


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
        "--noise",
        type=_fraction,
        default=defaults.NOISY,
        metavar="FRACTION",
        help="flag rows whose median is uncertain by more than this fraction (half-width of its "
        f"95%% interval over the median) as noisy (default: {defaults.NOISY})",
    )
    p.add_argument(
        "--tuned",
        type=Path,
        metavar="FILE",
        help=f"configuration sweep to show (default: {defaults.TUNED} in the release folder "
        "the gate result names, when it exists)",
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
        "--paired",
        metavar="RUN",
        help="check the paired benchmarks (pytest bench/ --baseline-release, --pair-devices, "
        "--pair-variants) of one saved run: a run number such as 0003 or a file path",
    )
    p.add_argument(
        "--fail-on",
        action="append",
        default=[],
        metavar="RULE",
        help="with --compare or --paired: exit 1 on a regression beyond RULE, e.g. median:10%%",
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
        if args.compare and args.paired:
            raise ReportError("--compare and --paired: expected one of them")
        if args.paired:
            return _paired(args)
        return _compare(args) if args.compare else _report(args)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # as exporters.errors.run_cli: one line, the shell's 128 + SIGINT
        print("error: interrupted", file=sys.stderr)
        return 130


def _report(args: argparse.Namespace) -> int:
    if args.fail_on:
        raise ReportError("--fail-on needs --compare BASE CAND or --paired RUN")
    from mge_harness.reports.build import write_report

    written = write_report(
        benchmarks=args.benchmarks,
        gate=args.gate,
        out=args.out,
        noise=args.noise,
        baseline_device=args.baseline_device,
        tuned=args.tuned,
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
    print(comparison_markdown(comparison), end="")  # compare.md, the canary drift line included
    return 0 if comparison else 1


def _paired(args: argparse.Namespace) -> int:
    from mge_harness.reports.compare import check_paired, paired_text
    from mge_harness.reports.rules import RegressionRule
    from mge_harness.reports.sources import find_run, read_run

    rules = [RegressionRule.parse(text) for text in args.fail_on]
    check = check_paired(read_run(find_run(args.paired, args.benchmarks)), rules)
    print(paired_text(check), end="")
    return 0 if check else 1
