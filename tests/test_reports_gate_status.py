"""``python -m reports --require-gate-pass``: the main job's last word on the gate."""

from __future__ import annotations

import json

import pytest

from mge_harness.reports import synthetic as syn
from mge_harness.reports.cli import main


@pytest.mark.parametrize("passed, code", [(True, 0), (False, 1)])
def test_exit_code_follows_the_gate_after_writing_the_report(tmp_path, passed, code):
    storage, gate = syn.demo_storage(tmp_path)
    data = json.loads(gate.read_text())
    data["passed"] = passed
    gate.write_text(json.dumps(data))
    out = tmp_path / "out"
    args = ["--benchmarks", str(storage), "--gate", str(gate), "--out", str(out)]
    assert main([*args, "--require-gate-pass"]) == code
    assert (out / "report.md").is_file()  # the report is written either way


def test_a_missing_gate_result_fails_the_requirement(tmp_path, capsys, monkeypatch):
    storage, _ = syn.demo_storage(tmp_path)
    monkeypatch.chdir(tmp_path)  # the default results/gate.json must not exist
    args = ["--benchmarks", str(storage), "--out", str(tmp_path / "out")]
    assert main([*args, "--require-gate-pass"]) == 1
    assert "no gate result" in capsys.readouterr().err


def test_the_report_lists_what_the_gate_did_not_cover(tmp_path):
    from mge_harness.equivalence.checks import NO_EAGER_SOURCE

    storage, gate = syn.demo_storage(tmp_path)
    data = json.loads(gate.read_text())
    data["notes"] = [NO_EAGER_SOURCE]
    gate.write_text(json.dumps(data))
    out = tmp_path / "out"
    assert main(["--benchmarks", str(storage), "--gate", str(gate), "--out", str(out)]) == 0
    assert f"Not covered: {NO_EAGER_SOURCE}" in (out / "report.md").read_text()


def test_the_report_shows_each_failure_s_closest_explanation_and_evidence(tmp_path):
    storage, gate = syn.demo_storage(tmp_path)
    data = json.loads(gate.read_text())
    check = data["variants"][0]["checks"][0]
    check.update(
        verdict="fail",
        diagnosis={"family": "crop", "figure": 0.99998, "reference_figure": 0.31},
        evidence="/results/counterexamples/v/evidence.png",
    )
    check["metrics"] = {**(check.get("metrics") or {}), "spread_ratio": 0.587}
    gate.write_text(json.dumps(data))
    out = tmp_path / "out"
    assert main(["--benchmarks", str(storage), "--gate", str(gate), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "closest explanation" in text and "| crop |" in text.replace("  ", " ")
    assert "/results/counterexamples/v/evidence.png" in text
    assert "spread ratio" in text and "0.587" in text  # the scale-free rule's figure
