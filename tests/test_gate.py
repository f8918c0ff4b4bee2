"""The gate end to end, around the built-in ``tiny`` model.

* The built-in release passes (exit 0) with identity-warp caught as an expected failure, and
  pytest-xdist gives the same verdicts.
* Releases with deliberately wrong fused preprocessing (crop, BGR/RGB swap, wrong mean/std,
  nearest interpolation, align_corners=True), traced here with megengine.functional, fail the
  gate, each with a saved counterexample that reproduces in one command.
* Bad releases stop the gate with one line naming the file, exit code 4, no traceback.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import find, settings

from tests.hardening_models import run_gate

REPO = Path(__file__).resolve().parent.parent
MODEL = "tiny"
USAGE_ERROR = 4  # pytest's exit code for a UsageError


@pytest.fixture(scope="module")
def tiny_release() -> Path:
    from mge_harness.exporters.release import builtin_release

    return builtin_release(MODEL, progress=None)


def verdicts(document: dict) -> dict[str, dict[str, str]]:
    """{variant: {check: verdict, ..., "variant": verdict}} of a gate.json document."""
    table = {}
    for variant in document["variants"]:
        table[variant["id"]] = {c["check"]: c["verdict"] for c in variant["checks"]}
        table[variant["id"]]["variant"] = variant["verdict"]
    return table


# --- the built-in release: everything correct passes, identity-warp is caught ----------------


@pytest.fixture(scope="module")
def builtin_gate(tiny_release, tmp_path_factory):
    out = tmp_path_factory.mktemp("gate")
    return run_gate(tiny_release, out, "--junitxml", str(out / "junit.xml")) + (out,)


def test_gate_passes_correct_exports_and_catches_identity_warp(builtin_gate):
    proc, document, _ = builtin_gate
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert document["passed"] is True and document["model"] == MODEL
    assert document["hypothesis_profile"] == "ci"
    table = verdicts(document)
    assert table[f"{MODEL}.identity-warp.cbn-on"]["variant"] == "xfail"
    assert table[f"{MODEL}.identity-warp.cbn-on"]["reference"] == "xfail"
    correct = [v for v in table if "identity-warp" not in v]
    assert len(correct) == 4 and all(table[v]["variant"] == "pass" for v in correct)


def test_passing_checks_report_metrics_tolerance_and_positive_margin(builtin_gate):
    _, document, _ = builtin_gate
    checks = [c for v in document["variants"] for c in v["checks"] if c["verdict"] == "pass"]
    assert {c["check"] for c in checks} >= {"reference", "fuse", "eager", "batch", "determinism"}
    for check in checks:
        assert check["examples"] >= 1 and 0 < check["margin"] <= 1
        assert check["metrics"]["status"] == "pass"
        assert set(check["tolerance"]) == {
            "atol", "rtol", "cosine_min", "spread_ratio", "centred_cosine_min"
        }  # fmt: skip
        # The scale-free rule applied: the built-in's outputs vary between images.
        spread_ratio = check["metrics"]["spread_ratio"]
        assert spread_ratio is not None and spread_ratio <= check["tolerance"]["spread_ratio"]


def test_caught_expected_failure_has_a_counterexample(builtin_gate):
    _, document, _ = builtin_gate
    (warp,) = [v for v in document["variants"] if v["expected_failure"]]
    (reference,) = [c for c in warp["checks"] if c["check"] == "reference"]
    assert reference["margin"] < 0 and Path(reference["counterexample"]).is_file()


def test_junitxml_carries_the_gate_properties(builtin_gate):
    _, _, out = builtin_gate
    names = {p.get("name") for p in ET.parse(out / "junit.xml").getroot().iter("property")}
    assert {"gate_check", "gate_variant", "gate_record"} <= names


def test_xdist_gives_the_same_verdicts(builtin_gate, tiny_release, tmp_path):
    _, serial, _ = builtin_gate
    proc, parallel = run_gate(tiny_release, tmp_path, "-n", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert verdicts(parallel) == verdicts(serial)
    assert parallel["release"] == serial["release"]


# --- planted bugs in fused preprocessing ----------------------------------------------------


def _normalize(x, spec):
    import megengine as mge

    if spec.color == "rgb":
        x = x[:, [2, 1, 0]]
    mean = mge.tensor(np.asarray(spec.mean, np.float32).reshape(1, 3, 1, 1))
    std = mge.tensor(np.asarray(spec.std, np.float32).reshape(1, 3, 1, 1))
    return (x - mean) / std


def _interpolate(mode: str, align_corners: bool | None):
    def preprocess(data, spec):
        import megengine.functional as F

        x = F.transpose(data.astype("float32"), (0, 3, 1, 2))
        x = F.vision.interpolate(x, size=spec.size, mode=mode, align_corners=align_corners)
        return _normalize(x, spec)

    return preprocess


def _crop(data, spec):
    from mge_harness.exporters.preprocess import identity_warp_preprocess

    return identity_warp_preprocess(data, spec)


def _channel_swap(data, spec):
    from mge_harness.exporters.preprocess import fused_preprocess

    return fused_preprocess(data, replace(spec, color="rgb" if spec.color == "bgr" else "bgr"))


def _reversed_mean_std(data, spec):
    from mge_harness.exporters.preprocess import fused_preprocess

    return fused_preprocess(data, replace(spec, mean=spec.mean[::-1], std=spec.std[::-1]))


#: Wrong fused preprocessings, each claiming to be a correct "fused" variant.
PLANTED = {
    "crop": _crop,  # identity warp: top-left window, not a resize
    "channel-swap": _channel_swap,  # feeds RGB to a BGR model
    "mean-std-reversed": _reversed_mean_std,  # RGB-ordered statistics on BGR pixels
    "nearest": _interpolate("nearest", None),
    "align-corners": _interpolate("bilinear", True),  # another sampling grid
}


def dump_planted(module, preprocess, spec, path: Path) -> None:
    from mge_harness.exporters.export import dump_graph
    from mge_harness.exporters.variants import Variant

    height, width = spec.size
    example = np.zeros((1, height + 7, width + 13, 3), np.uint8)
    options = Variant("tiny", "fused", True).dump_options()
    dump_graph(lambda data: module(preprocess(data, spec)), example, path, options)


def plant(folder: Path, source: Path, bugs: dict) -> list[dict]:
    """Dumps the built-in model of the release ``source`` behind each wrong preprocessing of
    ``bugs`` ({name: function}) into ``folder``; returns their manifest entries, each claiming
    to be a correct fused variant."""
    from mge_harness.exporters.manifest import load_manifest
    from mge_harness.exporters.release import builtin_module

    manifest = load_manifest(source)
    module = builtin_module(manifest.model)
    entries = []
    for name, preprocess in bugs.items():
        dump_planted(module, preprocess, manifest.preprocess, folder / f"{name}.mge")
        entries.append(
            {
                "id": f"{manifest.model}.{name}",
                "file": f"{name}.mge",
                "preprocessing": "fused",
                "fuse_conv_bias_nonlinearity": True,
            }
        )
    return entries


def write_release(folder: Path, source: Path, entries: list[dict]) -> Path:
    """A hand-written manifest (a user's release: no "builtin" flag) in ``folder``."""
    data = json.loads((source / "manifest.json").read_text())
    manifest = {"model": data["model"], "preprocess": data["preprocess"], "variants": entries}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder


def _copy_variant(source: Path, folder: Path, variant_id: str, **changes) -> dict:
    entry = {
        k: v
        for k, v in next(
            v
            for v in json.loads((source / "manifest.json").read_text())["variants"]
            if v["id"] == variant_id
        ).items()
        if k in ("id", "file", "preprocessing", "fuse_conv_bias_nonlinearity", "input")
    }
    shutil.copy(source / entry["file"], folder / entry["file"])
    return {**entry, "expected_failure": None, **changes}


@pytest.fixture(scope="module")
def planted_release(tiny_release, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("planted")
    entries = [
        _copy_variant(tiny_release, folder, f"{MODEL}.external.cbn-off"),
        _copy_variant(tiny_release, folder, f"{MODEL}.fused.cbn-on"),
        _copy_variant(
            tiny_release,
            folder,
            f"{MODEL}.fused.cbn-off",
            expected_failure="marked bad but correct: its expected failure is not caught",
        ),
    ]
    entries += plant(folder, tiny_release, PLANTED)
    return write_release(folder, tiny_release, entries)


@pytest.fixture(scope="module")
def planted_gate(planted_release, tmp_path_factory):
    return run_gate(
        planted_release, tmp_path_factory.mktemp("planted-gate"), "-k", "test_reference"
    )


def test_gate_fails_on_planted_bugs(planted_gate):
    proc, document = planted_gate
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert document["passed"] is False
    table = verdicts(document)
    assert table[f"{MODEL}.fused.cbn-on"] == {"reference": "pass", "variant": "pass"}
    assert table[f"{MODEL}.fused.cbn-off"]["variant"] == "xpass"


@pytest.mark.parametrize("bug", PLANTED)
def test_each_planted_bug_fails_numerically_with_a_counterexample(planted_gate, bug):
    _, document = planted_gate
    (variant,) = [v for v in document["variants"] if v["id"] == f"{MODEL}.{bug}"]
    (check,) = variant["checks"]
    assert variant["verdict"] == check["verdict"] == "fail"
    metrics, tolerance = check["metrics"], check["tolerance"]
    assert metrics["status"] == "mismatch"
    assert check["margin"] < 0 or metrics["cosine"] < tolerance["cosine_min"]
    images = np.load(check["counterexample"])
    assert images.dtype == np.uint8 and images.ndim == 4 and images.shape[3] == 3
    pngs = sorted(Path(check["counterexample"]).parent.glob("reference-*.png"))
    assert len(pngs) == len(images)


def test_counterexample_reproduces_in_one_command(planted_gate):
    _, document = planted_gate
    (variant,) = [v for v in document["variants"] if v["id"] == f"{MODEL}.crop"]
    npy = Path(variant["checks"][0]["counterexample"])
    command = json.loads(npy.with_suffix(".json").read_text())["command"]
    assert command in variant["checks"][0]["message"]
    still_failing = subprocess.run(shlex.split(command), cwd=REPO, capture_output=True, text=True)
    assert still_failing.returncode == 1 and "MISMATCH" in still_failing.stdout
    correct = [*shlex.split(command), "--variant", f"{MODEL}.fused.cbn-on"]
    assert subprocess.run(correct, cwd=REPO, capture_output=True).returncode == 0


def test_numeric_comparison_fails_bugs_that_keep_the_top1_class(planted_release):
    from mge_harness.equivalence.gate import Gate
    from mge_harness.equivalence.strategies import image_batches
    from mge_harness.exporters.manifest import load_manifest

    gate = Gate(load_manifest(planted_release))
    try:
        bug = f"{MODEL}.mean-std-reversed"

        def same_class_but_failing(images):
            result = gate.run("reference", bug, images)
            return result.top1_agreement == 1.0 and not result

        images = find(
            image_batches(max_batch=1, max_side=64),
            same_class_but_failing,
            settings=settings(max_examples=300, database=None),
        )
        assert gate.run("reference", f"{MODEL}.fused.cbn-on", images)
    finally:
        gate.close()


# --- bad releases: one line, naming the file, no traceback ----------------------------------


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _manifest_edit(edit):
    def apply(folder: Path) -> None:
        path = folder / "manifest.json"
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data))

    return apply


def _declare_raw_input(data: dict) -> None:
    # The external graph takes float32 NCHW; declaring it fused (uint8 NHWC) is a lie.
    variant = next(v for v in data["variants"] if v["id"] == f"{MODEL}.external.cbn-on")
    variant.update(preprocessing="fused", input={"name": "data", "dtype": "uint8"})


FUSED_FILE = f"{MODEL}.fused.cbn-on.mge"
BAD_RELEASES = {
    "missing folder": (lambda f: shutil.rmtree(f), "release folder does not exist"),
    "no manifest": (lambda f: (f / "manifest.json").unlink(), "manifest.json: missing"),
    "manifest not JSON": (
        lambda f: (f / "manifest.json").write_text("{oops"),
        "manifest.json: not valid JSON",
    ),
    "manifest without variants": (
        _manifest_edit(lambda d: d.pop("variants")),
        "manifest.json: missing key 'variants'",
    ),
    "input not named data": (
        _manifest_edit(lambda d: d["variants"][0].update(input={"name": "image"})),
        "input.name is 'image'",
    ),
    "input of the wrong dtype": (
        _manifest_edit(lambda d: d["variants"][0].update(input={"dtype": "uint8"})),
        "input.dtype is 'uint8'",
    ),
    "graph input not as declared": (_manifest_edit(_declare_raw_input), "external.cbn-on.mge"),
    "model file missing": (lambda f: (f / FUSED_FILE).unlink(), FUSED_FILE),
    "model file empty": (lambda f: (f / FUSED_FILE).write_bytes(b""), FUSED_FILE),
    "model file truncated": (lambda f: _truncate(f / FUSED_FILE), FUSED_FILE),
    "not a model": (lambda f: (f / FUSED_FILE).write_bytes(os.urandom(4096)), FUSED_FILE),
}


@pytest.mark.parametrize("case", BAD_RELEASES)
def test_bad_release_stops_with_one_line(tiny_release, tmp_path, case):
    break_it, expected = BAD_RELEASES[case]
    release = tmp_path / "release"
    shutil.copytree(tiny_release, release)
    break_it(release)
    proc, document = run_gate(release, tmp_path)
    output = proc.stdout + proc.stderr
    errors = [line for line in output.splitlines() if line.startswith("ERROR: ")]
    assert proc.returncode == USAGE_ERROR, output
    assert len(errors) == 1 and expected in errors[0], output
    assert "Traceback" not in output
    # gate.json fails closed: a refused release leaves no earlier verdict behind.
    assert (document["status"], document["passed"], document["variants"]) == ("error", False, [])
    assert expected in document["error"]


# --- the reference side, computed once per batch ---------------------------------------------


def test_the_reference_side_is_computed_once_per_batch_and_gives_the_same_verdicts(
    tiny_release,
):
    from mge_harness.equivalence.gate import Gate
    from mge_harness.exporters.manifest import load_manifest

    manifest = load_manifest(tiny_release)
    rng = np.random.default_rng(5)
    batches = [rng.integers(0, 256, (n, 40 + n, 50, 3), np.uint8) for n in (1, 2, 3)]
    variants = ["tiny.external.cbn-on", "tiny.fused.cbn-off", "tiny.fused.cbn-on"]
    shared = Gate(manifest)
    results = {}
    for check in ("reference", "eager", "photos"):
        for variant in variants:
            for i, images in enumerate(batches):
                fresh = Gate(manifest).run(check, variant, images)  # nothing kept before
                kept = shared.run(check, variant, images.copy())  # same pixels, new array
                assert (kept.status, kept.margin) == (fresh.status, fresh.margin)
                results[check, variant, i] = kept
    # Per batch, 15 asks: reference and photos each want the reference pipeline and its
    # exact-resize form for 3 variants (12), eager its module once per variant (3). Computed
    # once per batch: those two pipelines and the eager module of "external" and of "fused".
    assert shared.pool.memo_misses == 3 * 4
    assert shared.pool.memo_hits == 3 * (15 - 4)
    assert all(results.values())


def test_kept_outputs_are_read_only_and_bounded():
    from mge_harness.equivalence.gate import RunnerPool

    pool = RunnerPool(manifest=None, memo_bytes=3 * 400)
    calls = []

    def compute(value):
        calls.append(value)
        return {"logits": np.full(100, value, np.float32)}  # 400 bytes

    images = [np.full((1, 2, 2, 3), i, np.uint8) for i in range(4)]
    first = pool.memoized(("reference",), images[0], lambda: compute(0))
    with pytest.raises(ValueError, match="read-only"):
        first["logits"][0] = 1
    assert pool.memoized(("reference",), images[0].copy(), lambda: compute(9)) is first
    pool.memoized(("eager", "fused"), images[0], lambda: compute(1))  # another pipeline
    for i in (1, 2, 3):
        pool.memoized(("reference",), images[i], lambda i=i: compute(10 + i))
    assert calls == [0, 1, 11, 12, 13]
    pool.memoized(("reference",), images[0], lambda: compute(20))  # dropped past 1200 bytes
    assert calls[-1] == 20 and pool.memo_hits == 1
