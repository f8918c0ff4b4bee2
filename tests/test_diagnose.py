"""Diagnosis and evidence of failures against the reference pipeline (tiny model, 32x32).

* Planted preprocessing bugs (``tests/test_gate.py``'s crop, channel swap, reversed mean/std)
  are named as their closest explanation in the failure text and in gate.json; a bug outside
  the families (a brightness change) gets "no known explanation"; a correct variant none.
* Each failing variant has an evidence PNG whose panels (photo, reference input, variant
  input) differ; on the built-in release the identity-warp graph's own pixels are the crop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.hardening_models import run_gate
from tests.test_gate import PLANTED, _copy_variant, plant, write_release

MODEL = "tiny"
NAMED = {"crop": "crop", "channel-swap": "channel-swap", "mean-std-reversed": "mean-std-reversed"}


def _brightness(data, spec):
    from mge_harness.exporters.preprocess import fused_preprocess

    return fused_preprocess(data, spec) + 0.5  # half a std brighter: no family does this


@pytest.fixture(scope="module")
def tiny_release() -> Path:
    from mge_harness.exporters.release import builtin_release

    return builtin_release(MODEL, progress=None)


@pytest.fixture(scope="module")
def planted_release(tiny_release, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("planted-diagnose")
    entries = [
        _copy_variant(tiny_release, folder, f"{MODEL}.external.cbn-off"),
        _copy_variant(tiny_release, folder, f"{MODEL}.fused.cbn-on"),
    ]
    bugs = {name: PLANTED[name] for name in NAMED} | {"brightness": _brightness}
    return write_release(folder, tiny_release, entries + plant(folder, tiny_release, bugs))


@pytest.fixture(scope="module")
def gate_run(planted_release, tmp_path_factory) -> dict[str, dict[str, dict]]:
    """{variant: {check: record}} of a gate run on the planted release: the reference check,
    and the photo check of the crop."""
    out = tmp_path_factory.mktemp("diagnose-gate")
    selected = f"test_reference or (test_photos and {MODEL}.crop)"
    proc, document = run_gate(planted_release, out, "-k", selected)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    # The gate's summary names each failure's closest explanation.
    assert f"{MODEL}.crop reference: closest explanation crop" in proc.stdout
    assert f"{MODEL}.crop photos: closest explanation crop" in proc.stdout
    assert f"{MODEL}.brightness reference: closest explanation no known explanation" in proc.stdout
    return {v["id"]: {c["check"]: c for c in v["checks"]} for v in document["variants"]}


@pytest.fixture(scope="module")
def gate_checks(gate_run) -> dict[str, dict]:
    """{variant: its reference check record}."""
    return {variant: checks["reference"] for variant, checks in gate_run.items()}


@pytest.mark.parametrize("bug", NAMED)
def test_planted_bug_names_its_family(gate_checks, bug):
    check = gate_checks[f"{MODEL}.{bug}"]
    assert check["verdict"] == "fail"
    diagnosis = check["diagnosis"]
    assert diagnosis["family"] == NAMED[bug]
    assert diagnosis["figure"] >= 0.999 > diagnosis["reference_figure"]
    line = next(ln for ln in check["message"].splitlines() if "closest explanation" in ln)
    assert f"the {NAMED[bug]} family" in line and "with the reference" in line


def test_crop_explanation_reads_as_a_crop(gate_checks):
    message = gate_checks[f"{MODEL}.crop"]["message"]
    assert "closest explanation: crops the top-left 32x32 instead of resizing" in message


def test_photo_check_failure_is_diagnosed_too(gate_run):
    check = gate_run[f"{MODEL}.crop"]["photos"]
    assert check["verdict"] == "fail" and check["diagnosis"]["family"] == "crop"
    assert Path(check["evidence"]).is_file() and "closest explanation: crops" in check["message"]


def test_bug_outside_the_families_has_no_known_explanation(gate_checks):
    check = gate_checks[f"{MODEL}.brightness"]
    assert check["verdict"] == "fail" and check["diagnosis"]["family"] is None
    assert "closest explanation: no known explanation" in check["message"]


def test_correct_variant_gets_no_diagnosis(gate_checks, planted_release):
    from mge_harness.equivalence.diagnose import diagnose
    from mge_harness.equivalence.gate import Gate
    from mge_harness.equivalence.photos import photo_groups
    from mge_harness.exporters.manifest import load_manifest

    check = gate_checks[f"{MODEL}.fused.cbn-on"]
    assert check["verdict"] == "pass"
    assert check["diagnosis"] is None and check["evidence"] is None
    gate = Gate(load_manifest(planted_release))
    try:  # asked anyway, on photos it resizes: nothing beats the reference
        for group in photo_groups()[:3]:
            assert diagnose(gate, f"{MODEL}.fused.cbn-on", group.images).family is None
    finally:
        gate.close()


def _panels(path: Path) -> list[np.ndarray]:
    import cv2

    from mge_harness.equivalence.evidence import split_panels

    image = cv2.imread(str(path))
    assert image is not None and min(image.shape[:2]) >= 224
    return split_panels(image)


def _differ(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).mean() > 5


@pytest.mark.parametrize("bug", [*NAMED, "brightness"])
def test_evidence_image_beside_the_counterexample(gate_checks, bug):
    check = gate_checks[f"{MODEL}.{bug}"]
    evidence = Path(check["evidence"])
    assert evidence.is_file() and evidence.parent == Path(check["counterexample"]).parent
    assert f"evidence: {evidence}" in check["message"]
    photo, reference, variant = _panels(evidence)
    assert _differ(photo, reference) and _differ(reference, variant) and _differ(photo, variant)


def test_evidence_of_a_known_recipe_shows_the_graphs_own_input(tiny_release, tmp_path):
    """Built-in release: the identity-warp recipe, dumped alone and run, feeds the crop."""
    from mge_harness.equivalence.diagnose import FAMILIES
    from mge_harness.equivalence.evidence import evidence_photo, save_evidence, to_pixels, variant_feed
    from mge_harness.equivalence.gate import Gate
    from mge_harness.exporters.manifest import load_manifest

    variant_id = f"{MODEL}.identity-warp.cbn-on"
    gate = Gate(load_manifest(tiny_release))
    try:
        spec, photo = gate.manifest.preprocess, evidence_photo()
        pixels, label = variant_feed(gate, variant_id, photo, None)
        path = save_evidence(gate, variant_id, None, tmp_path / "evidence.png")
    finally:
        gate.close()
    assert "identity-warp" in " ".join(label)
    crop = to_pixels(FAMILIES["crop"].preprocess(photo[None], spec), spec)
    assert np.abs(pixels.astype(int) - crop.astype(int)).max() <= 1
    photo_panel, reference, variant = _panels(path)
    assert _differ(reference, variant) and _differ(photo_panel, variant)
