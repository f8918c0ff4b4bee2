"""The gate on a user's model: the eager check, rebuilt from the manifest's ``source`` or
``--eager``, and input sensitivity before any check.

A dump bug shows only against the eager module (MegEngine 1.13 writes ``F.clip(x, 1, 6)`` so that
Lite returns the same outputs for every image, and every Lite variant agrees with every other).
A model whose outputs do not depend on the image passes every check vacuously: refused.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from mge_harness.equivalence.checks import NO_EAGER_SOURCE
from mge_harness.equivalence.sensitivity import (
    MIN_RELATIVE_SPREAD,
    NOISE_FACTOR,
    check_input_sensitivity,
    spread,
)
from mge_harness.exporters.errors import HarnessError
from mge_harness.exporters.manifest import load_manifest
from tests.hardening_models import USAGE_ERROR, assert_one_line, run, run_bench, run_gate

pytestmark = pytest.mark.slow


def _export(out: Path, factory: str) -> Path:
    result = run(
        "-m", "exporters", "--model", f"tests.userzoo:{factory}", "--out", out,
        "--size", "32x32", "--variants", "external,fused", "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def clip_release(tmp_path_factory) -> Path:
    return _export(tmp_path_factory.mktemp("clip") / "rel", "clip_net")


@pytest.fixture(scope="module")
def small_release(tmp_path_factory) -> Path:
    return _export(tmp_path_factory.mktemp("small") / "rel", "small_net")


def _verdicts(gate: dict, check: str) -> dict[str, str]:
    return {
        v["id"]: c["verdict"] for v in gate["variants"] for c in v["checks"] if c["check"] == check
    }


def _said(note: str, stdout: str) -> bool:
    """``note`` is in the output, wrapped to the terminal or not."""
    return " ".join(note.split()) in " ".join(stdout.split())


def _hand_written(release: Path, folder: Path, keep_fingerprint: bool = False) -> Path:
    """A copy of ``release`` whose manifest lost ``source`` (and the fingerprint), as one
    written by hand around the same .mge files."""
    shutil.copytree(release, folder)
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    del data["source"]
    if not keep_fingerprint:
        del data["fingerprint"]
    path.write_text(json.dumps(data))
    return folder


def test_the_exporter_records_the_source_and_the_exported_weights(small_release):
    manifest = load_manifest(small_release)
    assert manifest.source.factory == "tests.userzoo:small_net"
    assert manifest.source.weights == small_release.resolve() / "weights.npz"
    data = json.loads((small_release / "manifest.json").read_text())
    assert data["source"]["weights"]["file"] == "weights.npz"
    assert len(data["source"]["weights"]["sha256"]) == 64


def test_a_clip_dump_bug_fails_the_eager_check_of_every_variant(clip_release, tmp_path):
    result, gate = run_gate(clip_release, tmp_path, "-k", "eager")
    assert result.returncode == 1, result.stdout + result.stderr
    verdicts = _verdicts(gate, "eager")
    assert len(verdicts) == 4 and set(verdicts.values()) == {"fail"}, verdicts
    # A bug that fails on every image shrinks to the smallest batch the strategy draws, and that
    # is the batch reported and saved (the explain phase's re-runs once left a larger one).
    for variant in gate["variants"]:
        (check,) = variant["checks"]
        assert "on a batch of shape (1, 1, 1, 3)" in check["message"], check["message"][:300]
    # Lite returns one output for every image, the eager module does not: the gate goes on.
    [note] = gate["notes"]
    assert note.startswith("input sensitivity: the Lite reference does not respond"), note
    assert "the eager module does" in note and _said(note, result.stdout)


def test_a_correct_user_model_passes_the_eager_check(small_release, tmp_path):
    result, gate = run_gate(small_release, tmp_path, "-k", "eager")
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(_verdicts(gate, "eager").values()) == {"pass"}


def test_without_a_source_the_headline_says_eager_was_not_checked(small_release, tmp_path):
    release = _hand_written(small_release, tmp_path / "rel")
    result, gate = run_gate(release, tmp_path, "-k", "eager")
    assert set(_verdicts(gate, "eager").values()) == {"skipped"}
    assert gate["notes"] == [NO_EAGER_SOURCE]
    assert _said(NO_EAGER_SOURCE, result.stdout)


def test_a_model_that_ignores_its_input_is_refused(tmp_path):
    release = _export(tmp_path / "rel", "deaf_net")
    result, gate = run_gate(release, tmp_path)
    assert_one_line(
        result, USAGE_ERROR, "ERROR: ", str(release.resolve()),
        "the reference outputs do not depend on the input", "across 8 distinct images",
        "no check can tell a broken variant from a correct one", "calibrate BatchNorm",
    )  # fmt: skip
    assert gate["status"] == "error" and not (tmp_path / "gate.json").exists()


def test_a_lost_input_without_an_eager_module_is_refused(clip_release, tmp_path):
    release = _hand_written(clip_release, tmp_path / "rel")
    result, _ = run_gate(release, tmp_path)
    assert_one_line(result, USAGE_ERROR, "ERROR: ", "do not depend on the input")


def test_eager_option_gives_a_hand_written_release_its_eager_check(clip_release, tmp_path):
    release = _hand_written(clip_release, tmp_path / "rel")
    weights = release / "weights.npz"
    result, gate = run_gate(
        release, tmp_path, "-k", "eager", "--eager", "tests.userzoo:clip_net", "--weights", weights
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert set(_verdicts(gate, "eager").values()) == {"fail"}
    # The rerun command in the failure text carries the same eager source.
    message = gate["variants"][0]["checks"][0]["message"]
    assert "--eager tests.userzoo:clip_net --weights" in message, message


def test_a_randomly_initialised_eager_factory_is_refused(clip_release, tmp_path):
    release = _hand_written(clip_release, tmp_path / "rel", keep_fingerprint=True)
    result, _ = run_gate(release, tmp_path, "-k", "eager", "--eager", "tests.userzoo:clip_net")
    assert_one_line(
        result, USAGE_ERROR, "ERROR: ", "--eager tests.userzoo:clip_net", "other weights",
        "--weights",
    )  # fmt: skip


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--eager", "tests.nosuch:net"], "cannot import 'tests.nosuch'"),
        (["--eager", "not a factory"], "expected package.module:factory"),
        (["--weights", "w.npz"], "only with --eager"),
    ],
)
def test_bad_eager_options_are_one_line(small_release, tmp_path, args, fragment):
    result, _ = run_gate(small_release, tmp_path, "-k", "eager", *args)
    assert_one_line(result, USAGE_ERROR, "ERROR: ", fragment)


def test_changed_source_weights_are_refused(small_release, tmp_path):
    release = tmp_path / "rel"
    shutil.copytree(small_release, release)
    (release / "weights.npz").write_bytes(b"changed")
    with pytest.raises(HarnessError, match=r"weights\.npz .*sha256 differs"):
        load_manifest(release)


@pytest.mark.parametrize(
    "source, fragment",
    [
        ("tests.userzoo:small_net", "must be an object"),
        ({"factory": "no colon"}, "source.factory must be 'package.module:callable'"),
        ({"factory": "a.b:c", "wieghts": "w.npz"}, "unknown key 'wieghts'"),
        ({"factory": "a.b:c", "weights": "../w.npz"}, "points outside the release folder"),
        ({"factory": "a.b:c", "weights": {"file": "w.npz", "sha256": "12"}}, "64 hex digits"),
    ],
)
def test_bad_source_keys_are_one_line(small_release, tmp_path, source, fragment):
    release = tmp_path / "rel"
    shutil.copytree(small_release, release)
    data = json.loads((release / "manifest.json").read_text())
    data["source"] = source
    (release / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(HarnessError, match=fragment.replace("(", r"\(").replace(".", r"\.")):
        load_manifest(release, verify=False)


# --- the spread itself, on arrays -----------------------------------------------------------


def test_spread_is_judged_against_float_noise():
    rng = np.random.default_rng(0)
    varied = rng.normal(0, 1, (8, 10))
    assert spread(varied).responds and spread(varied * 1e-6).responds
    # A constant offset is no reason to refuse: logits near 1000 varying by 0.3 respond.
    assert spread(1000.0 + 0.3 * varied).responds
    # Float noise decides: the spread must be NOISE_FACTOR times what one-by-one changes.
    s = spread(varied).spread
    assert spread(varied, alone=varied + s / NOISE_FACTOR / 2).responds
    noisy = spread(varied, alone=varied + s / NOISE_FACTOR * 2)
    assert not noisy.responds and "times its float noise" in noisy.describe()
    # Without visible noise, a spread of a few float32 ulps of the outputs is no response.
    assert not spread(1.0 + varied * 1e-8).responds
    assert spread(np.ones((8, 10))).spread == 0.0 and not spread(np.ones((8, 10))).responds
    assert MIN_RELATIVE_SPREAD < 1e-5


def test_sensitivity_refuses_only_when_no_reference_responds():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (8, 16, 16, 3), np.uint8)

    def deaf(images):
        return {"logits": np.ones((len(images), 5), np.float32)}

    def hearing(images):
        return {"logits": images.reshape(len(images), -1)[:, :5].astype(np.float32)}

    assert check_input_sensitivity(hearing(images), images) == []
    with pytest.raises(HarnessError, match="rel: the reference outputs do not depend"):
        check_input_sensitivity(deaf(images), images, release="rel")
    with pytest.raises(HarnessError, match="do not depend"):
        check_input_sensitivity(deaf(images), images, deaf)
    [note] = check_input_sensitivity(deaf(images), images, hearing)
    assert "the dump lost the input" in note
    # NaN outputs are left to the checks, which name them.
    nan = rng.normal(size=(8, 5))
    nan[0, 0] = np.nan
    assert check_input_sensitivity({"logits": nan}, images) == []
    # One output that responds is enough (a detector's anchors are constant).
    both = {**deaf(images), "boxes": hearing(images)["logits"]}
    assert check_input_sensitivity(both, images) == []


# --- models that return a tuple, a dict, or detections -------------------------------------


@pytest.mark.parametrize(
    "factory, outputs",
    [
        ("tuple_net", [("out0", "tensor"), ("out1", "tensor")]),
        ("dict_net", [("scores", "tensor"), ("features", "tensor")]),
        ("detect_net", [("boxes", "tensor"), ("anchors", "tensor")]),
    ],
)
def test_multi_output_models_export_pass_and_catch_the_crop(tmp_path, factory, outputs):
    release = tmp_path / "rel"
    result = run(
        "-m", "exporters", "--model", f"tests.userzoo:{factory}", "--out", release,
        "--size", "32x32", "--variants", "external,fused,identity-warp", "--quiet",
    )  # fmt: skip
    assert (result.returncode, result.stderr) == (0, "")
    manifest = load_manifest(release)
    assert [(o.name, o.kind) for o in manifest.outputs] == outputs
    assert manifest.variants[0].provenance["dump_options"]["output_names"] == [
        n for n, _ in outputs
    ]
    proc, gate = run_gate(release, tmp_path)
    assert proc.returncode == 0 and gate["passed"], proc.stdout + proc.stderr
    crop = f"{factory}.identity-warp.cbn-on"
    assert _verdicts(gate, "reference")[crop] == "xfail"  # caught: it must fail, and did
    assert set(_verdicts(gate, "eager").values()) == {"pass"}


def test_a_classifier_reads_the_output_marked_logits(tmp_path):
    from mge_harness.exporters.classify import Classifier

    release = _export(tmp_path / "rel", "dict_net")
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), np.uint8)
    with pytest.raises(HarnessError, match="mark it with kind 'logits'"):
        Classifier(release).classify(image)
    path = release / "manifest.json"
    data = json.loads(path.read_text())
    data["outputs"][0]["kind"] = "logits"
    path.write_text(json.dumps(data))
    [result] = Classifier(release, top_k=3).classify(image)
    assert len(result.predictions) == 3


@pytest.mark.parametrize(
    "factory, size, fragments",
    [
        (
            "fixed_size_net", "16x16",
            ["fixed_size_net variant fixed_size_net.external.cbn-off", "(1, 3, 16, 16)",
             "model size 16x16", "--size", "RuntimeError"],
        ),
        ("bad_key_net", "32x32", ["forward returned a dict with key 3"]),
        ("nested_net", "32x32", ["output 'out1' is list, not a tensor"]),
    ],
)  # fmt: skip
def test_models_that_cannot_be_dumped_are_one_line_and_leave_no_folder(
    tmp_path, factory, size, fragments
):
    out = tmp_path / "rel"
    result = run(
        "-m", "exporters", "--model", f"tests.userzoo:{factory}", "--out", out, "--size", size,
        "--quiet",
    )  # fmt: skip
    assert_one_line(result, 2, "error: ", *fragments)
    assert not out.exists()


def test_outputs_key_is_validated(small_release, tmp_path):
    release = tmp_path / "rel"
    shutil.copytree(small_release, release)
    path = release / "manifest.json"
    data = json.loads(path.read_text())
    for outputs, fragment in [
        ([{"name": "logits", "kind": "boxes"}], "kind must be one of"),
        ([{"name": "a"}, {"name": "a"}], "output 'a' appears twice"),
        ([{"name": "logits", "knd": "tensor"}], "unknown key 'knd'"),
        ([], "non-empty list"),
    ]:
        path.write_text(json.dumps({**data, "outputs": outputs}))
        with pytest.raises(HarnessError, match=fragment):
            load_manifest(release)


def test_a_channel_swap_under_a_large_constant_offset_fails(tmp_path):
    """Logits near 1000 that vary by 0.3 between images: a swapped channel order stays within
    the elementwise atol and a raw cosine near 1, and fails the scale-free rule."""
    from mge_harness.exporters.manifest import load_manifest
    from mge_harness.exporters.release import eager_module
    from tests.test_gate import PLANTED, dump_planted

    release = _export(tmp_path / "rel", "offset_net")
    manifest = load_manifest(release)
    dump_planted(eager_module(manifest), PLANTED["channel-swap"], manifest.preprocess,
                 release / "swap.mge")  # fmt: skip
    path = release / "manifest.json"
    data = json.loads(path.read_text())
    data["variants"].append({
        "id": "offset_net.swap", "file": "swap.mge", "preprocessing": "fused",
        "fuse_conv_bias_nonlinearity": True,
    })  # fmt: skip
    path.write_text(json.dumps(data))
    result, gate = run_gate(release, tmp_path, "-k", "reference")
    verdicts = _verdicts(gate, "reference")
    assert verdicts.pop("offset_net.swap") == "fail", result.stdout
    assert set(verdicts.values()) <= {"pass", "skipped"}, verdicts
    [check] = [c for v in gate["variants"] if v["id"] == "offset_net.swap" for c in v["checks"]]
    metrics, tolerance = check["metrics"], check["tolerance"]
    assert metrics["cosine"] >= tolerance["cosine_min"]  # the raw cosine sees nothing
    assert metrics["spread_ratio"] > 10 * tolerance["spread_ratio"]
    assert "between-image spread" in check["message"]


# --- declared input shapes -------------------------------------------------------------------


@pytest.fixture(scope="module")
def fixed_size_release(small_release, tmp_path_factory) -> Path:
    """small_net's release plus a fused graph that takes only 32x32 images (a reshape to
    (N, 32, 32, 3) inside), listed without an input.shape."""
    import megengine.functional as F

    from mge_harness.exporters.export import dump_graph
    from mge_harness.exporters.preprocess import preprocessing_recipe
    from mge_harness.exporters.release import eager_module
    from mge_harness.exporters.variants import Variant

    release = tmp_path_factory.mktemp("fixed") / "rel"
    shutil.copytree(small_release, release)
    manifest = load_manifest(release)
    module, spec = eager_module(manifest), manifest.preprocess
    recipe = preprocessing_recipe("fused")

    def graph(data):
        return module(recipe(F.reshape(data, (data.shape[0], 32, 32, 3)), spec))

    example = np.zeros((1, 32, 32, 3), np.uint8)
    dump_graph(graph, example, release / "fixed.mge", Variant("s", "fused", True).dump_options())
    data = json.loads((release / "manifest.json").read_text())
    data["variants"].append({
        "id": "small_net.fixed", "file": "fixed.mge", "preprocessing": "fused",
        "fuse_conv_bias_nonlinearity": True,
    })  # fmt: skip
    (release / "manifest.json").write_text(json.dumps(data))
    return release


def _declare(release: Path, variant: str, shape) -> None:
    path = release / "manifest.json"
    data = json.loads(path.read_text())
    for entry in data["variants"]:
        if entry["id"] == variant:
            entry["input"] = {"shape": shape}
    path.write_text(json.dumps(data))


def test_a_graph_failing_at_a_size_it_claims_to_take_is_refused_at_once(
    fixed_size_release, tmp_path
):
    result, gate = run_gate(fixed_size_release, tmp_path)
    assert_one_line(
        result, USAGE_ERROR, "ERROR: ", "fixed.mge (variant small_net.fixed)",
        "fails on batches of 1 and 4 uint8 images of 480x640", "input.shape [None, None, None, 3]",
        "probe failed", "declare the size it takes in input.shape",
    )  # fmt: skip
    assert gate["status"] == "error"


def test_a_declared_fixed_size_is_honoured_and_named_in_the_verdict(fixed_size_release, tmp_path):
    release = tmp_path / "rel"
    shutil.copytree(fixed_size_release, release)
    _declare(release, "small_net.fixed", [None, 32, 32, 3])
    assert load_manifest(release).variant("small_net.fixed").fixed_size == (32, 32)
    result, gate = run_gate(release, tmp_path)
    assert result.returncode == 0 and gate["passed"], result.stdout + result.stderr
    [note] = [n for n in gate["notes"] if n.startswith("small_net.fixed")]
    assert "takes only 32x32 images" in note and "never checked" in note
    assert _said(note, result.stdout)
    fixed = {c["check"]: c for v in gate["variants"] if v["id"] == "small_net.fixed"
             for c in v["checks"]}  # fmt: skip
    assert fixed["reference"]["verdict"] == fixed["photos"]["verdict"] == "pass"
    # The benchmarks feed it its size too (e2e frames are 480x640 for the others).
    bench = run_bench(release, "--benchmark-disable", "-k", "fixed")
    assert bench.returncode == 0, bench.stdout + bench.stderr
    assert "passed" in bench.stdout and "failed" not in bench.stdout


@pytest.mark.parametrize(
    "shape, fragment",
    [
        ([1, 32, 32, 3], "the batch must be null"),
        ([None, 32, None, 3], "both null (any size) or both fixed"),
        ([None, 32, 32, 4], "takes [N, H, W, 3]"),
        ([None, 32, 32], "4 positive integers or nulls"),
        ([None, 0, 32, 3], "4 positive integers or nulls"),
    ],
)
def test_bad_input_shapes_are_one_line(small_release, tmp_path, shape, fragment):
    release = tmp_path / "rel"
    shutil.copytree(small_release, release)
    _declare(release, "small_net.fused.cbn-on", shape)
    with pytest.raises(HarnessError, match=re.escape(fragment)):
        load_manifest(release)


def test_an_external_graph_declares_the_model_size(small_release, tmp_path):
    release = tmp_path / "rel"
    shutil.copytree(small_release, release)
    _declare(release, "small_net.external.cbn-on", [None, 3, 32, 32])
    assert load_manifest(release).variant("small_net.external.cbn-on").input.shape[2:] == (32, 32)
    _declare(release, "small_net.external.cbn-on", [None, 3, 64, 64])
    with pytest.raises(HarnessError, match=r"takes \[None, 3, 32, 32\]"):
        load_manifest(release)
