"""The gate's verdicts: collected from test reports, written to ``gate.json``, summarised.

Registered as a plugin object by ``equivalence.plugin``. It reads every report's
``user_properties`` (set by the plugin on gate items), so it works the same in one process and
on a pytest-xdist controller, which receives the workers' reports. Only the controller (or the
single process) writes ``gate.json``.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from mge_harness.equivalence.checks import GATE_CHECKS
from mge_harness.equivalence.record import (
    check_record,
    gate_document,
    worst_verdict,
    write_json_atomic,
)

_CHECK_ORDER = {name: i for i, name in enumerate(GATE_CHECKS)}


def phase_verdict(report, strict_xfail: bool) -> str | None:
    """The verdict one setup/call/teardown report gives its check (None: no say)."""
    if report.when != "call":
        if report.failed:
            return "error"
        return "skipped" if report.skipped else None
    if report.skipped:
        return "xfail" if hasattr(report, "wasxfail") else "skipped"
    if report.failed:
        # A strict xfail that passed is reported failed: the expected failure was not caught.
        return "xpass" if strict_xfail else "fail"
    return "pass"


def _report_message(report) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return report.longrepr[2].removeprefix("Skipped: ")
    if report.failed and report.when != "call" and report.longreprtext:
        return report.longreprtext.strip().splitlines()[-1]
    return ""


class GateReport:
    """Collects check records from reports; writes ``gate.json`` and a terminal summary."""

    def __init__(self, config, state):
        self.config = config
        self.state = state
        self.records: dict[tuple[str, str], dict] = {}
        self.release: dict | None = None
        self.written = None
        #: Every (variant, check) of the release, and those this run selected; None until known.
        self.expected: set[tuple[str, str]] | None = None
        self.selected: set[tuple[str, str]] = set()
        #: Headline notes the checking processes found before the checks (input sensitivity).
        self.notes: list[str] = []

    def expect(self, expected, selected) -> None:
        """Records what a full gate run would check and what this one selected (after -k, -m,
        --deselect, node ids): the difference makes the run partial."""
        self.expected = set(expected)
        self.selected |= set(selected)

    def pytest_runtest_logreport(self, report):
        props = dict(report.user_properties)
        if "gate_check" not in props:
            return
        key = (props["gate_variant"], props["gate_check"])
        for note in json.loads(props.get("gate_notes", "[]")):
            if note not in self.notes:
                self.notes.append(note)
        if key not in self.records:
            self.records[key] = {
                "check": props["gate_check"],
                "variant": props["gate_variant"],
                "variant_index": props["gate_variant_index"],
                "order": _CHECK_ORDER[props["gate_check"]],
                "expected_failure": props["gate_expected_failure"],
                "verdict": None,
                **check_record(None, False, None, ""),
            }
        record = self.records[key]
        if report.when == "call" and "gate_record" in props:
            record.update(json.loads(props["gate_record"]))
        # A check whose variant crashed or hung in its probe failed in setup: say which.
        verdict = props.get("gate_blocked") or phase_verdict(report, props["gate_strict_xfail"])
        if verdict is not None:
            record["verdict"] = worst_verdict(*filter(None, (record["verdict"], verdict)))
        if verdict == "xpass":
            reason = props["gate_expected_failure"]
            record["message"] = f"expected to fail ({reason}) but passed: {record['message']}"
        record["message"] = record["message"] or _report_message(report)

    def _release_info(self) -> dict | None:
        manifest = self.state.manifest
        if manifest is not None:
            return {"release": str(manifest.root), "model": manifest.model}
        return self.release

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error):
        """xdist controller: the workers loaded the release, the controller did not."""
        info = getattr(node, "workeroutput", {}).get("equivalence_release")
        if info and self.release is None:
            self.release = info

    @property
    def path(self):
        return self.config.invocation_params.dir / self.config.getoption("gate_json")

    @property
    def error_path(self):
        """Where a refused run's error goes: beside gate.json, which it leaves alone."""
        return error_path(self.path)

    def write_status(self, status: str) -> None:
        """Writes a gate.json without verdicts, "incomplete", before the checks run: it fails the
        gate until they finish. Workers write nothing."""
        if getattr(self.config, "workerinput", None) is None:
            self._write([], status, None)

    def write_error(self, error: str) -> str:
        """A run refused before checking anything: writes the error document beside gate.json
        (``gate.error.json``) and leaves gate.json as it was; returns the note for the user."""
        if getattr(self.config, "workerinput", None) is not None:
            return ""
        self._write([], "error", error, self.error_path)
        if self.path.exists():
            return f" [{self.path} not changed; this error: {self.error_path}]"
        return ""

    def _write(
        self,
        records: list[dict],
        status: str,
        error: str | None,
        path=None,
        not_run: list[dict] | None = None,
        notes: list[str] | None = None,
    ) -> dict:
        from hypothesis import settings

        info = self._release_info() or {"release": self.config.getoption("release"), "model": None}
        document = gate_document(
            info["release"],
            info["model"],
            settings.get_current_profile_name(),
            records,
            status,
            error,
            not_run,
            notes,
        )
        path = path or self.path
        write_json_atomic(path, document)
        if path == self.path:
            self.error_path.unlink(missing_ok=True)  # an older refusal no longer applies
        self.written = (path, document)
        return document

    def _not_run(self) -> list[dict]:
        """The (variant, check) pairs of a full gate run that this run did not check, in
        manifest and report order."""
        if self.expected is None:
            return []
        index = {v: i for i, v in enumerate(self._variant_order())}
        missing = sorted(
            self.expected - set(self.records),
            key=lambda k: (index.get(k[0], len(index)), k[0], _CHECK_ORDER.get(k[1], 0)),
        )
        return [{"variant": variant, "check": check} for variant, check in missing]

    def _variant_order(self) -> list[str]:
        manifest = self.state.manifest
        return [e.id for e in manifest.variants] if manifest is not None else []

    def pytest_sessionfinish(self, session):
        worker_output = getattr(self.config, "workeroutput", None)
        if worker_output is not None:
            worker_output["equivalence_release"] = self._release_info()
            return
        if not self.records:
            return
        records = [{**r, "verdict": r["verdict"] or "error"} for r in self.records.values()]
        not_run = self._not_run()
        status = "partial" if not_run else "complete"
        document = self._write(
            records, status, None, not_run=not_run, notes=self.notes + _notes(records)
        )
        # A partial run keeps pytest's own exit code: it is not a release verdict either way.
        failed = status == "complete" and not document["passed"]
        if failed and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED  # the gate fails closed

    def pytest_terminal_summary(self, terminalreporter):
        if self.written is None:
            return
        path, document = self.written
        if document["status"] == "error":  # the one "ERROR: ..." line says it all
            return
        terminalreporter.section("equivalence gate")
        for line in summary_table(document["variants"]):
            terminalreporter.write_line(line)
        if document["status"] == "partial":
            ran = sum(len(v["checks"]) for v in document["variants"])
            missing = len(document["not_run"])
            terminalreporter.write_line(
                f"partial run: not a release verdict ({ran} of {ran + missing} checks ran; "
                f"{missing} did not, listed in not_run): {path}"
            )
        else:
            verdict = "PASSED" if document["passed"] else "FAILED"
            unfinished = " (the gate did not finish)" if document["status"] == "incomplete" else ""
            terminalreporter.write_line(f"gate {verdict}{unfinished}: {path}")
        for note in document.get("notes", ()):
            for line in textwrap.wrap(note, WIDTH, initial_indent="  ", subsequent_indent="    "):
                terminalreporter.write_line(line)


def _notes(records: list[dict]) -> list[str]:
    """Headline lines for checks that no variant could run for a reason that leaves a class of
    defects unseen: the eager check without a model source."""
    from mge_harness.equivalence.checks import NO_EAGER_SOURCE

    skipped = [r for r in records if r["check"] == "eager" and r["message"] == NO_EAGER_SOURCE]
    return [NO_EAGER_SOURCE] if skipped else []


#: The summary table's width: it fits a 100-column terminal.
WIDTH = 100

#: Column headings of the checks (registry order) and the cell of each verdict.
_HEADINGS = {"reference": "ref", "determinism": "determ", "photos": "photo"}
_CELLS = {
    "pass": "ok", "fail": "FAIL", "xfail": "xfail", "xpass": "XPASS", "skipped": "-",
    "error": "ERROR", "crashed": "CRASH", "timeout": "HUNG", None: "?",
}  # fmt: skip
_LEGEND = (
    "ok pass, FAIL fail, xfail expected failure caught, XPASS expected failure not caught, "
    "- skipped or not applicable, CRASH/HUNG in its probe; margin: the worst passing check's, "
    "of a failed variant the worst failing check's (below 0)"
)


def summary_table(variants: list[dict], width: int = WIDTH) -> list[str]:
    """One row per variant, one column per check, and the worst margin of its passing checks
    (of a failed variant: of its failing checks, so a failure never shows a passing margin), in
    at most ``width`` columns (long variant ids are shortened in the middle)."""
    checks = [c for c in GATE_CHECKS if any(k["check"] == c for v in variants for k in v["checks"])]
    headings = [_HEADINGS.get(c, c)[:6] for c in checks]
    fixed = 2 + 7 + 7 * len(checks) + 7
    name_width = max(8, min(max((len(v["id"]) for v in variants), default=7), width - fixed))
    lines = [
        f"{'variant':<{name_width}}  {'verdict':<7}"
        + "".join(f" {h:<6}" for h in headings)
        + f" {'margin':>6}"
    ]
    for variant in variants:
        by_check = {c["check"]: c for c in variant["checks"]}
        cells = [_CELLS.get(by_check[c]["verdict"], "?") if c in by_check else "" for c in checks]
        shown = "fail" if variant["verdict"] == "fail" else "pass"
        margins = [
            c["margin"]
            for c in variant["checks"]
            if c["verdict"] == shown and c["margin"] is not None
        ]
        margin = _margin_cell(min(margins)) if margins else "-"
        lines.append(
            f"{_shorten(variant['id'], name_width):<{name_width}}  {variant['verdict']:<7}"
            + "".join(f" {cell:<6}" for cell in cells)
            + f" {margin:>6}"
        )
    return [*lines, *textwrap.wrap(_LEGEND, width), *_diagnoses(variants, width)]


def _margin_cell(margin: float) -> str:
    """A margin in the table's 6 columns: two decimals, "<-10" below -9.99."""
    return "<-10" if margin < -9.99 else f"{margin:.2f}"


def _diagnoses(variants: list[dict], width: int) -> list[str]:
    """A line per failure against the reference pipeline: its closest explanation."""
    lines = []
    for variant in variants:
        for check in variant["checks"]:
            diagnosis = check.get("diagnosis")
            if not diagnosis:
                continue
            family = diagnosis.get("family") or "no known explanation"
            lines += textwrap.wrap(
                f"{variant['id']} {check['check']}: closest explanation {family}",
                width,
                subsequent_indent="    ",
            )
    return lines


def _shorten(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return f"{text[:head]}~{text[len(text) - (width - 1 - head) :]}"


def error_path(gate_json):
    """``gate.error.json`` beside ``gate.json``: where a refused run writes its error."""
    from pathlib import Path

    gate_json = Path(gate_json)
    return gate_json.with_name(f"{gate_json.stem}.error{gate_json.suffix or '.json'}")
