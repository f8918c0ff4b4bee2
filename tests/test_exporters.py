"""Exporters: variant matrix, release folders, operator histograms, cache, runners."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from mge_harness.exporters.errors import HarnessError
from mge_harness.exporters.export import export_release, op_histogram
from mge_harness.exporters.manifest import load_manifest
from mge_harness.exporters.runners import (
    HostPreprocessRunner,
    LiteRunner,
    image_runner,
    lite_runner,
)
from mge_harness.exporters.variants import default_matrix, select_variants
from mge_harness.exporters.zoo import builtin_spec

EXPECTED_IDS = [
    "{m}.external.cbn-off",
    "{m}.external.cbn-on",
    "{m}.fused.cbn-off",
    "{m}.fused.cbn-on",
    "{m}.identity-warp.cbn-on",
]


@pytest.fixture(scope="module")
def tiny_release(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    export_release(builtin_spec("tiny"), out, progress=None)
    return out


@pytest.fixture(scope="module")
def resnet_release():
    from mge_harness.exporters.release import builtin_release

    return builtin_release("resnet18", progress=None)


def test_default_matrix_is_four_variants_plus_identity_warp():
    variants = default_matrix("resnet18")
    assert [v.id for v in variants] == [i.format(m="resnet18") for i in EXPECTED_IDS]
    assert [v.expected_failure is not None for v in variants] == [False] * 4 + [True]
    assert all(v.dump_options()["optimize_for_inference"] for v in variants)


def test_select_variants_all_adds_fused_exact_and_rejects_unknown():
    ids = [v.id for v in select_variants("m", "all")]
    assert "m.fused-exact.cbn-on" in ids and len(ids) == 7
    assert not any("fused-fast" in i for i in ids)
    with pytest.raises(HarnessError, match="unknown preprocessing 'crop'"):
        select_variants("m", "fused,crop")


def test_the_renamed_recipe_name_says_what_to_ask_for():
    with pytest.raises(HarnessError, match="'fused-fast' is now the default recipe, named 'fused'"):
        select_variants("m", "external,fused-fast")


def test_releases_naming_the_old_recipe_still_replay_it():
    from mge_harness.exporters.manifest import default_input
    from mge_harness.exporters.preprocess import (
        PreprocessSpec,
        fused_preprocess,
        preprocessing_recipe,
    )

    assert preprocessing_recipe("fused-fast") is fused_preprocess
    spec = PreprocessSpec(size=(8, 8))
    assert default_input("fused-fast", spec) == default_input("fused", spec)


@pytest.mark.parametrize("model", ["tiny", "resnet18"])
def test_release_folder_lists_every_variant_with_provenance(model, tiny_release, resnet_release):
    folder = tiny_release if model == "tiny" else resnet_release
    manifest = load_manifest(folder)
    assert [e.id for e in manifest.variants] == [i.format(m=model) for i in EXPECTED_IDS]
    raw = json.loads((folder / "manifest.json").read_text())
    assert raw["preprocess"]["size"] == list(builtin_spec(model).preprocess.size)
    import megengine

    for entry in manifest.variants:
        assert entry.path.is_file() and entry.path.parent == folder.resolve()
        prov = entry.provenance
        assert prov["megengine_version"] == megengine.__version__
        assert (
            prov["dump_options"]["enable_fuse_conv_bias_nonlinearity"]
            is entry.fuse_conv_bias_nonlinearity
        )
        import hashlib

        assert prov["sha256"] == hashlib.sha256(entry.path.read_bytes()).hexdigest()
        assert prov["op_histogram"] == op_histogram(entry.path)


@pytest.mark.parametrize("model", ["tiny", "resnet18"])
def test_conv_bias_appears_only_when_fusion_is_on(model, tiny_release, resnet_release):
    manifest = load_manifest(tiny_release if model == "tiny" else resnet_release)
    for entry in manifest.variants:
        hist = entry.provenance["op_histogram"]
        assert "BatchNorm" not in hist  # optimize_for_inference folds BN in every variant
        if entry.fuse_conv_bias_nonlinearity:
            assert hist.get("ConvBias", 0) > 0, entry.id
        else:
            assert hist.get("ConvBias", 0) == 0 and hist["Convolution"] > 0, entry.id
    assert (
        manifest.variant(f"{model}.identity-warp.cbn-on").provenance["op_histogram"][
            "WarpPerspective"
        ]
        == 1
    )


def test_resnet18_fusion_counts_match_models_layout(resnet_release):
    # 17 conv+BN+ReLU fuse; the three 1x1 downsample convs feed the residual add and stay.
    hist = (
        load_manifest(resnet_release).variant("resnet18.external.cbn-on").provenance["op_histogram"]
    )
    assert (hist["ConvBias"], hist["Convolution"]) == (17, 3)


@pytest.mark.parametrize("model", ["tiny", "resnet18"])
def test_every_variant_runs_at_batch_1_and_3_and_two_sizes(model, tiny_release, resnet_release):
    manifest = load_manifest(tiny_release if model == "tiny" else resnet_release)
    height, width = manifest.preprocess.size
    classes = 10 if model == "tiny" else 1000
    rng = np.random.default_rng(0)
    for entry in manifest.variants:
        with image_runner(entry, manifest) as runner:
            for batch in (1, 3):
                for size in ((height + 76, width + 176), (height // 2 + 1, width // 3 + 2)):
                    images = rng.integers(0, 256, (batch, *size, 3), np.uint8)
                    out = runner.infer({"data": images})["logits"]
                    assert out.shape == (batch, classes) and np.isfinite(out).all(), entry.id


def test_outputs_depend_on_the_input(resnet_release):
    from mge_harness.exporters.zoo import calibration_images

    manifest = load_manifest(resnet_release)
    images = calibration_images(8, (240, 320), seed=123)
    with image_runner(manifest.reference_variant(), manifest) as runner:
        logits = runner.infer({"data": images})["logits"]
    assert len(set(logits.argmax(axis=1))) >= 4
    assert logits.std(axis=0).mean() > 0.3


def test_second_export_reuses_files(tmp_path):
    messages = []
    export_release(builtin_spec("tiny"), tmp_path, progress=messages.append)
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.mge")}
    messages.clear()
    export_release(builtin_spec("tiny"), tmp_path, progress=messages.append)
    assert all(m.endswith(": cached") for m in messages) and len(messages) == 5
    assert stamps == {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.mge")}


def test_changes_and_tampering_re_export(tmp_path, monkeypatch):
    from mge_harness.exporters import export

    export_release(builtin_spec("tiny"), tmp_path, progress=None)
    target = tmp_path / "tiny.fused.cbn-on.mge"
    target.write_bytes(target.read_bytes()[:100])  # a truncated file must not be trusted
    messages = []
    export_release(builtin_spec("tiny"), tmp_path, progress=messages.append)
    assert [m for m in messages if "exported" in m] == [
        m for m in messages if "tiny.fused.cbn-on" in m
    ]
    assert load_manifest(tmp_path).variant("tiny.fused.cbn-on").provenance[
        "sha256"
    ] == export.file_sha256(target)

    monkeypatch.setattr(export, "megengine_version", lambda: "9.9.9")  # a MegEngine upgrade
    messages.clear()
    export_release(builtin_spec("tiny"), tmp_path, progress=messages.append)
    assert sum("exported" in m for m in messages) == 5


def test_no_temporary_files_are_left(tiny_release):
    hidden = sorted(p.name for p in tiny_release.iterdir() if p.name.startswith("."))
    assert hidden == [".export.lock"]


def test_a_changed_file_is_not_trusted_by_readers(tmp_path):
    export_release(builtin_spec("tiny"), tmp_path, progress=None)
    target = tmp_path / "tiny.fused.cbn-off.mge"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(
        HarnessError, match="tiny.fused.cbn-off.mge .*sha256 differs from manifest.json"
    ):
        load_manifest(tmp_path)
    target.unlink()
    with pytest.raises(HarnessError, match="listed in manifest.json but missing"):
        load_manifest(tmp_path)


def _export_process(out, model="tiny"):
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.Popen(
        [sys.executable, "-m", "exporters", "--model", model, "--out", str(out)],
        cwd=root, env=dict(os.environ, PYTHONPATH=root),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_two_exports_into_one_folder_do_not_corrupt_each_other(tmp_path):
    first, second = _export_process(tmp_path), _export_process(tmp_path)
    outputs = [p.communicate(timeout=300) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outputs
    manifest = load_manifest(tmp_path)  # verifies every file against its recorded sha256
    assert len(manifest.variants) == 5
    exported = sum(err.count(": exported") for _, err in outputs)
    assert exported == 5  # the second exporter waited, then found every file cached


#: The exporter, made to stop for good right after its second dump wrote its temporary file
#: (before the rename): it writes that file's path to argv[1] first, for the test to kill it
#: there. A fixed point, so the kill always lands with a finished .mge beside a .tmp in flight.
_STOPPED_MID_EXPORT = """
import sys, time
from pathlib import Path

from megengine.jit import trace

real_dump, dumps = trace.dump, []


def dump(self, file, *args, **kwargs):
    result = real_dump(self, file, *args, **kwargs)
    dumps.append(file)
    if len(dumps) == 2:
        Path(sys.argv[1]).write_text(str(file))
        time.sleep(600)
    return result


trace.dump = dump
from mge_harness.exporters.__main__ import main

sys.exit(main(["--model", "tiny", "--out", sys.argv[2], "--quiet"]))
"""


def test_kill_9_during_an_export_leaves_nothing_trusted(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out, marker = tmp_path / "release", tmp_path / "in-flight"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    process = subprocess.Popen(
        [sys.executable, "-c", _STOPPED_MID_EXPORT, str(marker), str(out)],
        cwd=root, env=dict(os.environ, PYTHONPATH=root),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate(timeout=30)
    assert marker.exists(), stderr[-3000:]
    in_flight = Path(marker.read_text())
    assert in_flight.exists() and in_flight.name.endswith(".tmp"), in_flight
    assert len(list(out.glob("*.mge"))) == 1  # the first dump, finished and renamed
    # No manifest yet, so nothing in the folder is trusted by any reader ...
    with pytest.raises(HarnessError, match="manifest.json: missing"):
        load_manifest(out)
    # ... and the next export cleans up and produces a complete, verified release.
    export_release(builtin_spec("tiny"), out, progress=None)
    assert not list(out.glob(".*.tmp"))
    assert len(load_manifest(out).variants) == 5


def test_lite_runner_checks_dtype_and_shape_before_feeding(tiny_release):
    manifest = load_manifest(tiny_release)
    with lite_runner(manifest.variant("tiny.external.cbn-off")) as runner:
        with pytest.raises(HarnessError, match="expected dtype float32, got float64"):
            runner.infer({"data": np.zeros((1, 3, 32, 32))})
        with pytest.raises(HarnessError, match=r"expected shape \('any', 3, 32, 32\)"):
            runner.infer({"data": np.zeros((1, 3, 64, 64), np.float32)})
        with pytest.raises(HarnessError, match="no input named 'image'"):
            runner.infer({"image": np.zeros((1, 3, 32, 32), np.float32)})
    with lite_runner(manifest.variant("tiny.fused.cbn-on")) as runner:
        with pytest.raises(HarnessError, match="expected dtype uint8"):
            runner.infer({"data": np.zeros((1, 40, 40, 3), np.float32)})
        with pytest.raises(HarnessError, match=r"expected shape \('any', 'any', 'any', 3\)"):
            runner.infer({"data": np.zeros((1, 40, 40, 4), np.uint8)})


def test_lite_runner_returns_copies_not_views_of_lite_buffers(tiny_release):
    manifest = load_manifest(tiny_release)
    rng = np.random.default_rng(3)
    a, b = (rng.integers(0, 256, (1, 50, 60, 3), np.uint8) for _ in range(2))
    with lite_runner(manifest.variant("tiny.fused.cbn-off")) as runner:
        first = runner.infer({"data": a})["logits"]
        kept = first.copy()
        runner.infer({"data": b})
    np.testing.assert_array_equal(first, kept)


def test_host_preprocess_runner_is_the_opencv_pipeline(tiny_release):
    from mge_harness.exporters.preprocess import reference_preprocess

    manifest = load_manifest(tiny_release)
    entry = manifest.reference_variant()
    images = np.random.default_rng(5).integers(0, 256, (2, 45, 70, 3), np.uint8)
    with lite_runner(entry) as lite, image_runner(entry, manifest) as host:
        assert isinstance(host, HostPreprocessRunner)
        expected = lite.infer({"data": reference_preprocess(images, manifest.preprocess)})
        np.testing.assert_array_equal(host.infer({"data": images})["logits"], expected["logits"])


def test_lite_matches_eager_module(tiny_release):
    from mge_harness.exporters.preprocess import reference_preprocess
    from mge_harness.exporters.release import builtin_module
    from mge_harness.exporters.runners import EagerRunner

    manifest = load_manifest(tiny_release)
    images = np.random.default_rng(9).integers(0, 256, (2, 37, 53, 3), np.uint8)
    eager = EagerRunner(builtin_module("tiny"))
    expected = eager.infer({"data": reference_preprocess(images, manifest.preprocess)})["logits"]
    for entry in manifest.variants[:4]:
        with image_runner(entry, manifest) as runner:
            got = runner.infer({"data": images})["logits"]
        tolerance = 1e-5 if entry.preprocessing == "external" else 0.05
        np.testing.assert_allclose(got, expected, atol=tolerance, err_msg=entry.id)


def test_cuda_config_is_refused_with_a_clear_reason_without_gpu(tiny_release):
    from mge_harness.exporters.devices import cuda_skip_reason

    if cuda_skip_reason() is None:
        pytest.skip("a CUDA device is present; this checks the CPU-only path")
    manifest = load_manifest(tiny_release)
    with pytest.raises(HarnessError, match="'cuda' cannot run here: no CUDA device"):
        LiteRunner(manifest.variants[0].path, "cuda").activate()


def test_unknown_device_config_lists_known_ones():
    from mge_harness.exporters.devices import get_device_config

    with pytest.raises(
        HarnessError, match="unknown device config 'tpu'; known configs: cpu, cpu-2t"
    ):
        get_device_config("tpu")


def test_export_is_atomic_when_dump_fails(tmp_path, monkeypatch):
    from mge_harness.exporters import export

    def explode(*args, **kwargs):
        raise RuntimeError("disk full (pretend)")

    export_release(builtin_spec("tiny"), tmp_path, progress=None)
    before = (tmp_path / "manifest.json").read_bytes()
    monkeypatch.setattr(export, "megengine_version", lambda: "new")
    monkeypatch.setattr(export, "dump_graph", explode)
    # A failing trace or dump is one line naming the model and variant, and changes nothing.
    with pytest.raises(HarnessError, match=r"tiny variant tiny\.external\.cbn-off: .*disk full"):
        export_release(builtin_spec("tiny"), tmp_path, progress=None)
    assert (tmp_path / "manifest.json").read_bytes() == before
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
