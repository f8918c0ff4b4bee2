"""``mge-harness``: one command in front of the harness's entry points.

Each subcommand is a thin front; its options are those of the entry point it runs::

    mge-harness export ...            python -m exporters ...
    mge-harness gate DIR [ARGS]       pytest --pyargs equivalence --release DIR [ARGS]
    mge-harness bench DIR [ARGS]      pytest --pyargs bench --release DIR [ARGS]
    mge-harness report ...            python -m reports ...
    mge-harness classify ...          python -m exporters.classify ...
    mge-harness tune ...              python -m bench.tune ...
    mge-harness run --model M [--out DIR] [--profile P] [-- BENCH PYTEST ARGS]
                                      export -> gate -> bench -> report (as tox -e bench)

``gate`` and ``bench`` work on a release from any folder: pytest's rootdir is the current folder
(unless ``--rootdir`` is given), so ``.pytest_cache``, ``.hypothesis``, ``results/`` and
``.benchmarks/`` land there. Exit status is the entry point's: 0 success; 1 a failed gate, a
failed benchmark or a regression; 2 a user mistake (one ``error: ...`` line on stderr) or a
missing optional dependency (the line names the extra to install); 4 (pytest's usage error) a
bad release or option given to ``gate``/``bench``. ``run`` stops at the first step that fails,
except the gate, and returns that step's status; after a failed gate the benchmarks and the
report still run and ``run`` returns 1.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from importlib.util import find_spec
from pathlib import Path

from mge_harness.exporters.errors import EXIT_USAGE, HarnessError, run_cli

PROG = "mge-harness"


def _front(module: str) -> Callable[[list[str]], int]:
    """The ``main(argv)`` of ``python -m MODULE``, imported when the command runs."""

    def run(args: list[str]) -> int:
        from importlib import import_module

        return import_module(module).main(args)

    return run


def _pytest_on(command: str, suite: str, extra: str | None) -> Callable[[list[str]], int]:
    """``pytest --pyargs SUITE --release DIR [ARGS]`` for the release folder ``DIR``."""

    def run(args: list[str]) -> int:
        if args and args[0] in ("-h", "--help"):
            print(
                f"usage: {PROG} {command} DIR [PYTEST ARGS]\n\n{HELP[command]}; every argument "
                "after DIR goes to pytest (pytest --help lists the harness's options)."
            )
            return 0
        if not args or args[0].startswith("-"):
            got = f", got {args[0]}" if args else ""
            raise HarnessError(
                f"{command}: expected the release folder DIR first{got} (see {PROG} {command} --help)"
            )
        _require(extra)
        rootdir = [] if any(a.startswith("--rootdir") for a in args) else ["--rootdir", "."]
        argv = [*_plugin_option(), "--pyargs", suite, "--release", args[0], *rootdir, *args[1:]]
        # A child process: pytest marks the installed harness's modules for assertion rewriting,
        # and this process has imported some of them already.
        return subprocess.run([sys.executable, "-m", "pytest", *argv]).returncode

    return run


PLUGIN = "mge_harness.pytest_plugin"


def _plugin_option() -> list[str]:
    """``-p mge_harness.pytest_plugin`` when its ``pytest11`` entry point is not installed (a
    checkout on ``PYTHONPATH``). The name is the entry point's, so pytest loads it once either way
    (a checkout's conftest.py names it too)."""
    from importlib.metadata import entry_points

    installed = any(ep.name == PLUGIN for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", PLUGIN]


#: extra -> the modules it installs that the harness imports.
EXTRAS = {"reports": ("pandas", "matplotlib", "scipy"), "bench": ("pytest_benchmark",)}


def _require(*extras: str | None) -> None:
    """A one-line HarnessError naming the extra to install when one of its modules is missing."""
    for extra in filter(None, extras):
        missing = [name for name in EXTRAS[extra] if find_spec(name) is None]
        if missing:
            raise HarnessError(
                f"{', '.join(missing)} missing: pip install 'mge-release-harness[{extra}]'"
            )


def _run(args: list[str]) -> int:
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str):  # one line instead of usage + message
            raise HarnessError(f"run: {message} (see {PROG} run --help)")

    parser = Parser(
        prog=f"{PROG} run",
        description="Export a model's release, gate it, benchmark it and write the report, "
        "as tox -e bench does. The benchmarks and the report run after a failed gate; the "
        "exit status is then 1. Arguments after -- go to the benchmarks' pytest run "
        "(e.g. -- --full-grid).",
    )
    parser.add_argument("--model", required=True, help="a built-in model or package.module:factory")
    parser.add_argument(
        "--out",
        default="results",
        help="folder for the release, gate and report (default: results)",
    )
    parser.add_argument(
        "--profile", default="ci", help="Hypothesis profile of the gate (default: ci)"
    )
    cut = args.index("--") if "--" in args else len(args)
    options, bench_args = parser.parse_args(args[:cut]), args[cut + 1 :]
    _require("bench", "reports")
    out = Path(options.out)
    release = str(out / "release")
    gate_json = out / "gate.json"

    def step(*command: str) -> int:
        return subprocess.run([sys.executable, "-m", "mge_harness", *command]).returncode

    status = step("export", "--model", options.model, "--out", release)
    if status:
        return status
    gate_json.unlink(missing_ok=True)
    gate = step(
        "gate", release, f"--hypothesis-profile={options.profile}",
        "--gate-json", str(gate_json), "--junitxml", str(out / "gate-junit.xml"),
        "--counterexamples", str(out / "counterexamples"),
    )  # fmt: skip
    status = step("bench", release, "--benchmark-autosave", *bench_args)
    if status:
        return status
    status = step("report", "--gate", str(gate_json), "--out", str(out), "--require-gate-pass")
    return status or (1 if gate else 0)


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "export": _front("mge_harness.exporters.__main__"),
    "gate": _pytest_on("gate", "equivalence", None),
    "bench": _pytest_on("bench", "bench", "bench"),
    "report": _front("mge_harness.reports.cli"),
    "classify": _front("mge_harness.exporters.classify"),
    "tune": _front("mge_harness.bench.tune"),
    "run": _run,
}

HELP = {
    "export": "export a model's variants into a release folder (python -m exporters)",
    "gate": "gate a release folder: pytest --pyargs equivalence --release DIR [pytest args]",
    "bench": "benchmark a release folder: pytest --pyargs bench --release DIR [pytest args]",
    "report": "tables, plots and a verdict from saved runs and gate.json (python -m reports)",
    "classify": "classify images with a release folder (python -m exporters.classify)",
    "tune": "find the fastest equivalent CPU config per variant (python -m bench.tune)",
    "run": "export -> gate -> bench -> report, as tox -e bench does",
}


def usage() -> str:
    rows = "\n".join(f"  {name:<9} {HELP[name]}" for name in COMMANDS)
    return (
        f"usage: {PROG} [--version] [--help] COMMAND [ARGS]\n\n"
        f"MegEngine release harness.\n\ncommands:\n{rows}\n\n"
        f"'{PROG} COMMAND --help' shows a command's options. Exit status: 0 success, 1 a failed "
        "gate, benchmark or regression, 2 a user mistake or a missing extra, 4 a bad release "
        "given to gate or bench."
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The ``mge-harness`` command; returns its exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else EXIT_USAGE
    if args[0] == "--version":
        from mge_harness.exporters.version import harness_version

        print(f"{PROG} {harness_version()}")
        return 0
    command = COMMANDS.get(args[0])
    if command is None:
        print(
            f"error: unknown command {args[0]!r}; expected one of {', '.join(COMMANDS)} "
            f"(see {PROG} --help)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return run_cli(lambda rest: command(list(rest)), args[1:])
