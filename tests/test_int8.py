"""The opt-in int8 variant on the tiny model: selection, manifest, export, the int8 check (a
planted broken export fails it), the float checks' skips, user models, and the tune row."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from mge_harness.equivalence.checks import GATE_CHECKS
from mge_harness.equivalence.gate import Gate
from mge_harness.equivalence.photos import photo_groups
from mge_harness.exporters import int8
from mge_harness.exporters.errors import HarnessError
from mge_harness.exporters.manifest import load_manifest
from mge_harness.exporters.variants import select_variants

INT8 = "tiny.external.int8"


def test_int8_is_opt_in_and_brings_the_external_variants_it_is_judged_against():
    assert all(v.quantization is None for v in select_variants("tiny", None))
    assert all(v.quantization is None for v in select_variants("tiny", "all"))
    ids = [v.id for v in select_variants("tiny", "int8")]
    assert ids == ["tiny.external.cbn-off", "tiny.external.cbn-on", INT8]
    ids = [v.id for v in select_variants("tiny", "fused,int8")]
    assert ids[0] == "tiny.external.cbn-off" and ids[-1] == INT8 and "tiny.fused.cbn-on" in ids
    with pytest.raises(HarnessError, match=r"unknown preprocessing 'int4'.*optionally int8"):
        select_variants("tiny", "int4")


def _export(folder: Path, monkeypatch=None, wrong_calibration: float | None = None) -> Path:
    from mge_harness.exporters.export import export_release
    from mge_harness.exporters.zoo import builtin_spec

    if wrong_calibration is not None:  # the planted bug: calibrated on mis-scaled inputs
        right = int8.calibration_batch
        monkeypatch.setattr(int8, "calibration_batch", lambda spec: right(spec) * wrong_calibration)
    export_release(builtin_spec("tiny"), folder, select_variants("tiny", "int8"), progress=None)
    return folder


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return _export(tmp_path_factory.mktemp("int8") / "tiny")


def _int8_results(folder: Path):
    gate = Gate(load_manifest(folder))
    try:
        gate.validate()
        return [gate.run("int8", INT8, group.images) for group in photo_groups()]
    finally:
        gate.close()


def test_the_manifest_records_the_quantization_and_the_graph_is_int8(release):
    manifest = load_manifest(release)
    entry = manifest.variant(INT8)
    assert entry.quantization == "int8" and entry.preprocessing == "external"
    assert manifest.reference_variant().quantization is None
    data = json.loads((release / "manifest.json").read_text())
    assert [v.get("quantization") for v in data["variants"]] == [None, None, "int8"]
    # QuantStub and DequantStub are the graph's TypeCvt pair; the two convs are int8 ConvBias
    assert entry.provenance["op_histogram"]["TypeCvt"] == 2
    assert entry.provenance["op_histogram"]["ConvBias"] == 2


def test_a_bad_quantization_in_a_hand_written_manifest_is_one_line(release, tmp_path):
    folder = tmp_path / "tiny"
    shutil.copytree(release, folder)
    data = json.loads((folder / "manifest.json").read_text())
    data["variants"][2]["quantization"] = "int4"
    (folder / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(HarnessError, match=r"variants\[2\]\.quantization must be one of"):
        load_manifest(folder)


def test_float_checks_skip_the_int8_variant_and_the_int8_check_only_it(release):
    manifest = load_manifest(release)
    entry, plain = manifest.variant(INT8), manifest.variant("tiny.external.cbn-on")
    for name in ("reference", "photos", "fuse", "eager"):
        assert "int8-quantized" in GATE_CHECKS[name].skip_reason(manifest, entry)
    for name in ("batch", "determinism"):
        assert GATE_CHECKS[name].skip_reason(manifest, entry) is None
    assert GATE_CHECKS["int8"].skip_reason(manifest, entry) is None
    assert "not an int8 variant" in GATE_CHECKS["int8"].skip_reason(manifest, plain)


def test_the_int8_export_passes_the_int8_check_on_every_photo(release):
    results = _int8_results(release)
    assert all(results), [str(r) for r in results if not r]
    assert min(r.cosine for r in results) >= int8.INT8_COSINE_MIN


def test_a_broken_int8_export_fails_the_int8_check(tmp_path, monkeypatch):
    # calibrated on inputs at 2 % of their real scale: every activation saturates on photos,
    # while the export-time self-check (on the same wrong inputs) cannot see it
    folder = _export(tmp_path / "tiny", monkeypatch, wrong_calibration=0.02)
    results = _int8_results(folder)
    assert not all(results)
    assert any(r.status == "mismatch" for r in results)


def test_a_user_model_with_an_unfused_batchnorm_is_refused_in_one_line():
    from tests.userzoo import small_net

    batch = np.zeros((2, 3, 8, 8), np.float32)
    with pytest.raises(HarnessError) as err:
        int8.quantize_module(small_net(), "small_net", False, batch)
    message = str(err.value)
    assert "\n" not in message
    assert "layer 'bn' (BatchNorm2d) cannot be quantized" in message
    assert "M.ConvBn2d" in message


def test_a_user_model_with_a_layer_it_never_calls_is_refused_in_one_line():
    import megengine.module as M

    class Unused(M.Module):
        def __init__(self):
            super().__init__()
            self.used = M.ConvBnRelu2d(3, 4, 3, padding=1, bias=False)
            self.spare = M.ConvBn2d(4, 4, 1, bias=False)

        def forward(self, x):
            return self.used(x)

    batch = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    with pytest.raises(HarnessError, match=r"layer 'spare' never ran on the calibration") as err:
        int8.quantize_module(Unused(), "unused", False, batch)
    assert "\n" not in str(err.value)


def test_a_user_model_that_adds_int8_tensors_of_two_scales_is_refused_in_one_line():
    from mge_harness.exporters.preprocess import PreprocessSpec
    from mge_harness.exporters.zoo import ModelSpec
    from tests.int8zoo import SIZE, plus_join

    module = plus_join()
    spec = ModelSpec("plus_join", PreprocessSpec(size=SIZE), lambda: module, "test")
    with pytest.raises(HarnessError, match=r"fails on the calibration images.*Elemwise") as err:
        int8.int8_module(module, spec)
    assert "\n" not in str(err.value)


def test_a_user_model_in_quantizable_layers_is_quantized_and_follows_the_float_one():
    import megengine as mge

    from mge_harness.exporters.preprocess import PreprocessSpec
    from mge_harness.exporters.zoo import ModelSpec
    from tests.int8zoo import SIZE, shufflenet_like

    module = shufflenet_like()
    spec = ModelSpec("shufflenet_like", PreprocessSpec(size=SIZE), lambda: module, "test")
    quantized = int8.int8_module(module, spec)
    batch = int8.calibration_batch(spec.preprocess)[:8]
    figures = int8.agreement(
        module(mge.tensor(batch)).numpy(), quantized(mge.tensor(batch)).numpy()
    )
    assert figures["cosine_min"] >= int8.INT8_COSINE_MIN


def test_tune_times_the_int8_variant_beside_the_configs_and_never_recommends_it(release):
    from mge_harness.bench import tune

    path, rows = tune.tune(
        release, ["tiny.external.cbn-off"], (1,), ["cpu-record"], rounds=5, probe_timeout=60,
        log=lambda line: None,
    )  # fmt: skip
    [row] = [r for r in rows if r.config == tune.INT8]
    assert row.verdict == "int8" and INT8 in row.reason and row.rounds == 5
    assert row.interval[0] <= row.speedup <= row.interval[1] and math.isfinite(row.speedup)
    document = json.loads(Path(path).read_text())
    recommended = document["variants"]["tiny.external.cbn-off"]["recommended"]
    assert recommended["config"] != tune.INT8
    assert "int8" in tune.table(rows)


def test_the_class_rule_fails_below_its_floors_and_passes_above():
    from mge_harness.equivalence.checks import INT8_TOLERANCE, class_rule
    from mge_harness.equivalence.compare import compare_outputs

    rng = np.random.default_rng(3)
    ref = rng.standard_normal((10, 1000)).astype(np.float32)
    swapped = ref.copy()
    rows = np.arange(6)  # 60 % of the images lose their top-1 to the class ranked 10th
    best, tenth = ref.argmax(axis=1), np.argsort(-ref, axis=1)[:, 9]
    swapped[rows, best[rows]], swapped[rows, tenth[rows]] = (
        ref[rows, tenth[rows]],
        ref[rows, best[rows]],
    )
    kept = class_rule(compare_outputs({"y": ref}, {"y": ref}, INT8_TOLERANCE), ref, ref)
    plain = compare_outputs({"y": ref}, {"y": swapped}, INT8_TOLERANCE)
    assert plain, str(plain)  # the numeric rule alone lets it through: the class rule decides
    lost = class_rule(plain, ref, swapped)
    assert kept and kept.status == "pass"
    assert not lost and lost.status == "mismatch"
    assert "on 40% of images" in lost.detail and "in its top 5 on 40%" in lost.detail
