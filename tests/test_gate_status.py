"""gate.json is a release verdict only for a full run; a refused run leaves an earlier one alone.

Each test runs the gate on the built-in tiny release in a child pytest, as a user would.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mge_harness.equivalence.checks import GATE_CHECKS
from mge_harness.equivalence.report import error_path
from tests.hardening_models import USAGE_ERROR, run, run_gate


@pytest.fixture(scope="module")
def tiny_release() -> Path:
    from mge_harness.exporters.release import builtin_release

    return builtin_release("tiny", progress=None)


@pytest.fixture(scope="module")
def tiny_ids(tiny_release) -> list[str]:
    return [v["id"] for v in json.loads((tiny_release / "manifest.json").read_text())["variants"]]


def _ran(document: dict) -> set[tuple[str, str]]:
    return {(v["id"], c["check"]) for v in document["variants"] for c in v["checks"]}


def _not_run(document: dict) -> set[tuple[str, str]]:
    return {(n["variant"], n["check"]) for n in document["not_run"]}


@pytest.mark.parametrize(
    "select",
    [
        ("-k", "determinism"),
        ("-k", "not photos"),
        ("-m", "not gate_check"),  # nothing of the gate runs: no document at all
        ("equivalence/test_gate.py::test_batch",),
        ("-n", "2", "-k", "determinism or batch"),
    ],
    ids=["k-one-check", "k-all-but-one", "m-none", "node-id", "xdist-k"],
)
def test_a_deselecting_run_is_partial_and_lists_what_did_not_run(
    tiny_release, tiny_ids, tmp_path, select
):
    if select[0].startswith("equivalence/"):
        proc, document = run_gate(tiny_release, tmp_path, target=select[0])
    else:
        proc, document = run_gate(tiny_release, tmp_path, *select)
    output = proc.stdout + proc.stderr
    if select[0] == "-m":
        assert document == {}, output
        return
    full = {(variant, check) for variant in tiny_ids for check in GATE_CHECKS}
    assert document["status"] == "partial" and document["passed"] is False, output
    assert _ran(document) | _not_run(document) == full
    assert _ran(document) and not _ran(document) & _not_run(document)
    assert "partial run: not a release verdict" in output
    # The exit code is pytest's own: everything that did run passed (or failed as expected).
    assert proc.returncode == 0, output


def test_stopping_early_is_partial(tiny_release, tmp_path):
    # A zero tolerance against the reference pipeline: the fused graphs (float resize in the
    # graph) are not bitwise equal to OpenCV's, so the first reference check fails and -x stops.
    tolerances = tmp_path / "exact.toml"
    tolerances.write_text("[checks.reference]\natol = 0\nrtol = 0\ncosine_min = 1.0\n")
    proc, document = run_gate(tiny_release, tmp_path, "-x", "--tolerances", tolerances)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert document["status"] == "partial" and document["passed"] is False, output
    assert document["not_run"], output


def test_a_full_run_is_complete(tiny_release, tmp_path):
    proc, document = run_gate(tiny_release, tmp_path)
    assert document["status"] == "complete", proc.stdout + proc.stderr
    assert document["not_run"] == [] and document["passed"] is True
    assert proc.returncode == 0


def test_a_refused_run_leaves_an_earlier_gate_json_alone(tiny_release, tmp_path):
    gate = tmp_path / "gate.json"
    proc, first = run_gate(tiny_release, tmp_path)
    assert first["passed"] is True, proc.stdout + proc.stderr
    before = gate.read_bytes()
    proc, _ = run_gate(tmp_path / "nonexist", tmp_path)
    output = proc.stdout + proc.stderr
    errors = [line for line in output.splitlines() if line.startswith("ERROR: ")]
    assert proc.returncode == USAGE_ERROR and len(errors) == 1, output
    assert gate.read_bytes() == before  # the earlier verdict is not lost
    refusal = json.loads(error_path(gate).read_text())
    assert (refusal["status"], refusal["passed"]) == ("error", False)
    assert "nonexist" in refusal["error"] and str(gate) in errors[0]
    # The next run that checks something replaces both: the refusal no longer applies.
    run_gate(tiny_release, tmp_path, "-k", "determinism")
    assert not error_path(gate).exists()
    assert json.loads(gate.read_text())["status"] == "partial"


def test_the_report_shows_a_partial_run_as_no_verdict(tiny_release, tmp_path):
    from mge_harness.reports.synthetic import demo_run, save

    proc, _ = run_gate(tiny_release, tmp_path, "-k", "determinism")
    storage = tmp_path / "benchmarks"
    save(storage, demo_run("cpu", 1), 1)
    out = tmp_path / "out"
    result = run(
        "-m", "reports", "--benchmarks", storage, "--gate", tmp_path / "gate.json", "--out", out,
        "--require-gate-pass",
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    markdown = next(out.glob("*.md")).read_text()
    assert "partial run: not a release verdict" in markdown


def test_the_summary_is_one_row_per_variant_within_100_columns():
    from mge_harness.equivalence.report import summary_table

    verdicts = ["pass", "fail", "xfail", "skipped", "crashed", "timeout", "xpass"]
    checks = [
        {
            "check": name,
            "verdict": verdict,
            "margin": -20.0 if verdict == "fail" else 0.25 + i / 100,
        }
        for i, (name, verdict) in enumerate(zip(GATE_CHECKS, verdicts))
    ]
    ids = ["tiny.fused.cbn-on", "a-very-long-user-model-name.fused-fast.cbn-on.with-a-suffix" * 2]
    lines = summary_table([{"id": i, "verdict": "fail", "checks": checks} for i in ids])
    assert all(len(line) <= 100 for line in lines), "\n".join(lines)
    header, short, long, *legend = lines
    assert header.split()[:3] == ["variant", "verdict", "ref"] and header.split()[-1] == "margin"
    assert short.split() == ["tiny.fused.cbn-on", "fail", "ok", "FAIL", "xfail", "-", "CRASH",
                             "HUNG", "XPASS", "<-10"]  # fmt: skip
    # A failed variant shows its failing check's margin, any other its worst passing one's.
    passing = [c for c in checks if c["verdict"] != "fail"]
    [_, row, *_] = summary_table([{"id": "ok-variant", "verdict": "pass", "checks": passing}])
    assert row.split()[-1] == "0.25"
    failing = [{**c, "margin": -0.5} if c["verdict"] == "fail" else c for c in checks]
    [_, row, *_] = summary_table([{"id": "bad-variant", "verdict": "fail", "checks": failing}])
    assert row.split()[-1] == "-0.50"
    assert "~" in long.split()[0] and long.split()[0].startswith("a-very-long")
    assert legend and "XPASS expected failure not caught" in " ".join(legend)
