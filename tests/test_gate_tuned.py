"""The gate's ``tuned`` check: the configuration ``tuned.json`` recommends, against Lite's default.

A real recommendation (nchw88 on the tiny model) passes; variants without one skip with the
reason that fits; a ``tuned.json`` that is not one fails the check in one line; a configuration
that changes results (a test double adding output noise) fails it; a configuration that crashed
its probe is never loaded and fails closed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mge_harness.equivalence import isolation
from mge_harness.equivalence.checks import GATE_CHECKS, TUNED_FILE, skip_reason
from mge_harness.exporters import release
from mge_harness.exporters.devices import DEVICE_CONFIGS
from mge_harness.exporters.manifest import load_manifest
from mge_harness.exporters.probe import ProbeResult
from tests.hardening_models import USAGE_ERROR, assert_one_line, run_gate
from tests.test_tune import NoisyRunner  # outputs moved by scale x their largest magnitude


def _recommendation(name: str) -> dict:
    config = DEVICE_CONFIGS[name]
    return {"config": name, "options": dict(config.options), "threads": config.threads}


#: Per variant of the tiny release: what tuned.json says (absent: no entry at all).
TUNED = {
    "tiny.external.cbn-on": {"recommended": _recommendation("cpu-nchw88"), "rows": []},
    "tiny.fused.cbn-on": {"recommended": _recommendation("cpu"), "rows": []},
    "tiny.fused.cbn-off": {"recommended": None, "rows": []},
}


@pytest.fixture(scope="module")
def tuned_release(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tuned") / "release"
    shutil.copytree(release.builtin_release("tiny", progress=None), folder)
    (folder / TUNED_FILE).write_text(json.dumps({"format_version": 1, "variants": TUNED}))
    return folder


def test_the_recommended_configuration_passes_and_others_skip_with_their_reason(
    tuned_release, tmp_path
):
    result, document = run_gate(tuned_release, tmp_path, "-k", "test_tuned")
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {
        variant["id"]: next(c for c in variant["checks"] if c["check"] == "tuned")
        for variant in document["variants"]
    }
    assert checks["tiny.external.cbn-on"]["verdict"] == "pass"
    reasons = {vid: c["message"] for vid, c in checks.items() if c["verdict"] == "skipped"}
    assert "recommends Lite's default" in reasons["tiny.fused.cbn-on"]
    assert "recommends no configuration" in reasons["tiny.fused.cbn-off"]
    assert "has no entry for this variant" in reasons["tiny.external.cbn-off"]


def test_a_release_without_tuned_json_skips_the_check():
    manifest = load_manifest(release.builtin_release("tiny", progress=None))
    reason = skip_reason("tuned", manifest, manifest.variants[0])
    assert reason.startswith("no tuned.json in the release") and "bench.tune" in reason


@pytest.mark.parametrize(
    "content, expected",
    [
        ("{not json", "tuned.json: not valid JSON"),
        (
            json.dumps(
                {
                    "format_version": 1,
                    "variants": {
                        "tiny.fused.cbn-on": {
                            "recommended": {"config": "x", "options": {"nope": 1}, "threads": 1}
                        }
                    },
                }
            ),
            "nope=1 is not an integer LiteOptions field",
        ),
    ],
)
def test_a_broken_tuned_json_refuses_the_gate_in_one_line(
    tuned_release, tmp_path, content, expected
):
    """A tuned.json is part of the release: one that is not one is refused before any check,
    like any other broken release file (exit 4, one line naming it), not failed per example."""
    broken = tmp_path / "release"
    shutil.copytree(tuned_release, broken)
    (broken / TUNED_FILE).write_text(content)
    result, _ = run_gate(broken, tmp_path / "out", "-k", "test_tuned")
    assert_one_line(result, USAGE_ERROR, "ERROR: ", str(broken / TUNED_FILE), expected)


@pytest.mark.parametrize("scale, passes", [(0.0, True), (1e-3, False)])
def test_a_configuration_that_changes_results_fails(tuned_release, monkeypatch, scale, passes):
    from mge_harness.equivalence.gate import Gate, RunnerPool

    image = RunnerPool.image

    def planted(self, entry, device="cpu"):
        runner = image(self, entry, device)
        tuned = getattr(device, "name", device).startswith("tuned:")
        return NoisyRunner(runner, scale) if tuned else runner

    monkeypatch.setattr(RunnerPool, "image", planted)
    gate = Gate(load_manifest(tuned_release))
    try:
        images = np.random.default_rng(1).integers(0, 256, (4, 40, 56, 3), dtype=np.uint8)
        result = gate.run("tuned", "tiny.external.cbn-on", images)
    finally:
        gate.close()
    assert bool(result) is passes, result


def test_a_configuration_that_crashed_its_probe_fails_closed(tuned_release, monkeypatch):
    """The gate probes each variant under its tuned configuration too; a crash there keeps the
    check from loading it and gives the probe's verdict."""
    calls = []

    def probe(root, ids, device="cpu", batch_sizes=(1,), timeout=0.0):
        calls.append((device, tuple(ids)))
        status = "crashed" if device == "cpu-nchw88" else "ok"
        return {vid: ProbeResult(status, "was killed by signal 11 (SIGSEGV)") for vid in ids}

    monkeypatch.setattr(isolation, "probe_variants", probe)
    manifest = load_manifest(tuned_release)
    blocked = isolation.probe_release(manifest, timeout=5.0)
    assert ("cpu-nchw88", ("tiny.external.cbn-on",)) in calls
    assert set(blocked) == {"tiny.external.cbn-on@cpu-nchw88"}
    entry = manifest.variant("tiny.external.cbn-on")
    verdict, reason = isolation.blocked_check("tuned", manifest, entry, blocked)
    assert verdict == "crashed" and "cpu-nchw88" in reason and "SIGSEGV" in reason
    for check in GATE_CHECKS:  # the variant's other checks still run
        if check != "tuned":
            assert isolation.blocked_check(check, manifest, entry, blocked) is None
