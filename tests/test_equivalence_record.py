"""Unit tests for the gate's bookkeeping: recorders, verdicts, gate.json, counterexamples."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from mge_harness.equivalence import reproduce
from mge_harness.equivalence.compare import Tolerance, compare
from mge_harness.equivalence.record import (
    CheckRecorder,
    check_record,
    gate_document,
    save_counterexample,
    variant_verdict,
    write_json_atomic,
)
from mge_harness.equivalence.report import phase_verdict
from mge_harness.exporters.errors import HarnessError

TOL = Tolerance(atol=0.1, rtol=0.0, cosine_min=-1.0)


def _result(error: float):
    ref = np.array([[1.0, 2.0, 3.0]], np.float32)
    return compare(ref, ref + np.float32(error), TOL)


def test_recorder_keeps_the_worst_result_and_the_last_input():
    recorder = CheckRecorder()
    for i, error in enumerate([0.01, 0.05, 0.02]):
        recorder.start(np.full((1, 2, 2, 3), i, np.uint8))
        recorder.finish(_result(error))
    assert recorder.examples == 3
    assert recorder.worst.max_abs == pytest.approx(0.05)
    assert recorder.last_result.max_abs == pytest.approx(0.02)
    assert recorder.last_images[0, 0, 0, 0] == 2


def test_record_of_a_failed_check_has_the_final_failing_metrics():
    recorder = CheckRecorder()
    recorder.start(np.zeros((1, 1, 1, 3), np.uint8))
    recorder.finish(_result(0.5))  # failing results are falsy: the record must still keep them
    record = check_record(recorder, True, "x.npy", "boom")
    assert record["metrics"]["status"] == "mismatch"
    assert record["margin"] == pytest.approx(1 - 0.5 / 0.1)
    assert record["tolerance"] == TOL.to_dict() and record["counterexample"] == "x.npy"


def test_record_without_any_example_is_empty():
    record = check_record(None, False, None, "skipped")
    assert record["examples"] == 0 and record["metrics"] is None and record["margin"] is None


@pytest.mark.parametrize(
    ("checks", "expected"),
    [
        (["pass", "skipped", "pass"], "pass"),
        (["skipped", "skipped"], "skipped"),
        (["xfail", "pass", "skipped"], "xfail"),
        (["xfail", "fail"], "fail"),
        (["xpass", "pass"], "xpass"),
        (["pass", "error", "fail"], "error"),
        ([], "skipped"),
    ],
)
def test_variant_verdict_is_the_worst_check(checks, expected):
    assert variant_verdict([{"verdict": v} for v in checks]) == expected


def _report(when, outcome, **extra):
    return SimpleNamespace(
        when=when,
        passed=outcome == "passed",
        failed=outcome == "failed",
        skipped=outcome == "skipped",
        **extra,
    )


@pytest.mark.parametrize(
    ("report", "strict", "expected"),
    [
        (_report("setup", "passed"), False, None),
        (_report("setup", "skipped"), False, "skipped"),
        (_report("setup", "failed"), False, "error"),
        (_report("call", "passed"), False, "pass"),
        (_report("call", "passed", wasxfail="r"), False, "pass"),  # non-strict xpass
        (_report("call", "failed"), False, "fail"),
        (_report("call", "failed"), True, "xpass"),  # strict xfail that passed
        (_report("call", "skipped", wasxfail="r"), True, "xfail"),
        (_report("teardown", "failed"), False, "error"),
    ],
)
def test_phase_verdicts(report, strict, expected):
    assert phase_verdict(report, strict) == expected


def _record(variant, index, check, order, verdict, expected_failure=None):
    return {
        "variant": variant,
        "variant_index": index,
        "check": check,
        "order": order,
        "verdict": verdict,
        "expected_failure": expected_failure,
        **check_record(None, False, None, ""),
    }


def test_gate_document_groups_by_variant_in_manifest_order():
    records = [
        _record("m.b", 1, "batch", 3, "pass"),
        _record("m.warp", 2, "reference", 0, "xfail", "crops"),
        _record("m.b", 1, "reference", 0, "pass"),
        _record("m.a", 0, "reference", 0, "skipped"),
    ]
    document = gate_document("/r", "m", "ci", records)
    assert [v["id"] for v in document["variants"]] == ["m.a", "m.b", "m.warp"]
    assert [c["check"] for c in document["variants"][1]["checks"]] == ["reference", "batch"]
    assert document["variants"][2] | {"checks": None} == {
        "id": "m.warp",
        "verdict": "xfail",
        "expected_failure": "crops",
        "checks": None,
    }
    assert document["passed"] is True
    json.dumps(document, allow_nan=False)


@pytest.mark.parametrize("bad", ["fail", "xpass", "error"])
def test_gate_fails_on_any_failing_variant(bad):
    records = [_record("m.a", 0, "reference", 0, "pass"), _record("m.b", 1, "batch", 3, bad)]
    assert gate_document("/r", "m", "ci", records)["passed"] is False


def test_gate_with_no_checks_does_not_pass():
    assert gate_document("/r", "m", "ci", [])["passed"] is False


def test_write_json_atomic_replaces_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "sub" / "gate.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in path.parent.iterdir()] == ["gate.json"]
    with pytest.raises(ValueError):
        write_json_atomic(path, {"a": float("nan")})
    assert json.loads(path.read_text()) == {"a": 2}


def test_counterexample_files_round_trip(tmp_path):
    import cv2

    images = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    npy = tmp_path / "v" / "reference.npy"
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "reference-5.png").write_bytes(b"stale")
    save_counterexample(npy, tmp_path / "release", images, {"variant": "v", "check": "reference"})
    np.testing.assert_array_equal(np.load(npy), images)
    pngs = sorted(npy.parent.glob("reference-*.png"))
    assert [p.name for p in pngs] == ["reference-0.png", "reference-1.png"]
    np.testing.assert_array_equal(cv2.imread(str(pngs[1])), images[1])
    sidecar = json.loads(npy.with_suffix(".json").read_text())
    assert sidecar["variant"] == "v" and sidecar["release"] == str(tmp_path / "release")
    assert sidecar["command"].endswith(f"-m equivalence.reproduce {npy}")


def test_reproduce_needs_to_know_what_to_run(tmp_path):
    npy = tmp_path / "x.npy"
    np.save(npy, np.zeros((1, 2, 2, 3), np.uint8))
    with pytest.raises(HarnessError, match="pass --release, --variant and --check"):
        reproduce.main([str(npy)])


def test_reproduce_rejects_arrays_that_are_not_image_batches(tmp_path):
    npy = tmp_path / "x.npy"
    np.save(npy, np.zeros((2, 2, 3), np.float32))
    with pytest.raises(HarnessError, match="uint8"):
        reproduce.load_images(npy)
