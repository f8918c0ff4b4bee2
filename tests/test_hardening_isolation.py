"""Crashes, hangs, NaN, kill -9 and concurrent sessions, end to end (docs/BAD_INPUTS.md).

* The gate probes every variant in a child process first: a variant whose .mge segfaults Lite or
  hangs is reported ``crashed``/``timeout`` in gate.json, the others are still checked, and the
  gate fails closed. A model that outputs NaN fails with status ``nonfinite``, never a pass.
* Every artifact is written atomically: a process killed in the middle leaves the old file or
  the whole new one, and a gate run killed mid-way leaves a gate.json that does not pass.
* Two sessions exporting the built-in release into one cache at once both get a valid release.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mge_harness.exporters.manifest import load_manifest
from tests.hardening_models import (
    ROOT,
    child_env,
    dump_nchw44_crasher,
    dump_slow_raw_input,
    run,
    run_gate,
)


@pytest.fixture(scope="module")
def tiny_release() -> Path:
    from mge_harness.exporters.release import builtin_release

    return builtin_release("tiny", progress=None)


def verdicts(document: dict) -> dict[str, tuple[str, dict[str, str]]]:
    """{variant: (verdict, {check: verdict})} of a gate.json document."""
    return {
        v["id"]: (v["verdict"], {c["check"]: c["verdict"] for c in v["checks"]})
        for v in document["variants"]
    }


# --- a variant that crashes Lite or hangs, in the gate --------------------------------------


@pytest.fixture(scope="module")
def hostile_release(tiny_release, tmp_path_factory) -> Path:
    """The tiny release plus a variant that segfaults Lite (marked expected_failure: a crash
    must not count as the expected failure being caught) and one that runs for minutes."""
    folder = Path(shutil.copytree(tiny_release, tmp_path_factory.mktemp("hostile") / "release"))
    manifest = json.loads((folder / "manifest.json").read_text())
    dump_nchw44_crasher(folder / "tiny.nchw44.mge", tuple(manifest["preprocess"]["size"]))
    dump_slow_raw_input(folder / "tiny.slow.mge")
    manifest["variants"] += [
        {"id": "tiny.nchw44", "file": "tiny.nchw44.mge", "preprocessing": "external",
         "fuse_conv_bias_nonlinearity": True, "expected_failure": "an ARM layout on x86"},
        {"id": "tiny.slow", "file": "tiny.slow.mge", "preprocessing": "fused",
         "fuse_conv_bias_nonlinearity": False},
    ]  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_gate_reports_crashed_and_hung_variants_and_checks_the_rest(hostile_release, tmp_path):
    result, document = run_gate(
        hostile_release, tmp_path, "--probe-timeout", "3", "-k", "test_reference or test_batch"
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    # -k selects two checks: a partial run, never a release verdict.
    assert (document["status"], document["passed"]) == ("partial", False)
    table = verdicts(document)
    crash = "tiny.nchw44 crashed: SIGSEGV (exit -11) in probe; it was not loaded in the gate"
    hang = "tiny.slow timed out after 3s in probe; it was not loaded in the gate"
    assert table["tiny.nchw44"] == ("crashed", {"reference": "crashed", "batch": "crashed"})
    assert table["tiny.slow"] == ("timeout", {"reference": "timeout", "batch": "timeout"})
    for variant in document["variants"]:
        if variant["id"] in ("tiny.nchw44", "tiny.slow"):
            assert {c["message"] for c in variant["checks"]} == {
                crash if variant["id"] == "tiny.nchw44" else hang
            }
            assert all(c["metrics"] is None for c in variant["checks"])
    healthy = {v: table[v] for v in table if v not in ("tiny.nchw44", "tiny.slow")}
    assert healthy.pop("tiny.identity-warp.cbn-on")[0] == "xfail"
    assert {verdict for verdict, _ in healthy.values()} == {"pass"} and len(healthy) == 4
    # One row per variant in the summary table: the verdict, then a cell per check.
    assert re.search(r"^tiny\.nchw44 +crashed +CRASH +CRASH +- *$", result.stdout, re.M), (
        result.stdout
    )


def test_a_check_that_needs_a_crashed_variant_is_an_error(tiny_release):
    """The reference pipeline's variant or a fuse twin that crashed blocks the checks that load
    it, with the verdict ``error`` (the variant checked is not at fault)."""
    from mge_harness.equivalence.isolation import blocked_check
    from mge_harness.exporters.probe import ProbeResult

    manifest = load_manifest(tiny_release)
    crashed = ProbeResult("crashed", "crashed: SIGSEGV (exit -11) in probe")
    blocked = {"tiny.external.cbn-off": crashed, "tiny.fused.cbn-off": crashed}
    fused_on = manifest.variant("tiny.fused.cbn-on")
    assert blocked_check("reference", manifest, fused_on, blocked) == (
        "error",
        "needs tiny.external.cbn-off, which crashed: SIGSEGV (exit -11) in probe; not checked",
    )
    assert blocked_check("fuse", manifest, fused_on, blocked)[1].startswith(
        "needs tiny.fused.cbn-off, which crashed"
    )
    assert blocked_check("photos", manifest, fused_on, blocked)[0] == "error"
    assert blocked_check("batch", manifest, fused_on, blocked) is None
    assert blocked_check("batch", manifest, manifest.variant("tiny.fused.cbn-off"), blocked)[0] == (
        "crashed"
    )


def test_the_gate_never_loads_a_blocked_variant(tiny_release):
    """Whatever a check asks for, the runner pool refuses a variant that crashed in its probe."""
    import numpy as np

    from mge_harness.equivalence.gate import Gate
    from mge_harness.exporters.errors import HarnessError

    gate = Gate(load_manifest(tiny_release))
    gate.pool.blocked = frozenset({"tiny.external.cbn-off"})
    images = np.zeros((1, 8, 8, 3), np.uint8)
    try:
        with pytest.raises(
            HarnessError, match="tiny.external.cbn-off crashed or hung in its probe"
        ):
            gate.run("reference", "tiny.fused.cbn-on", images)  # needs the reference variant
        assert gate.run("batch", "tiny.fused.cbn-on", np.concatenate([images] * 2))
    finally:
        gate.close()


# --- a model whose output is NaN ------------------------------------------------------------


def test_a_model_that_outputs_nan_fails_the_gate_as_nonfinite(tmp_path):
    release = tmp_path / "nan"
    result = run(
        "-m", "exporters", "--model", "tests.hardening_models:nan_net", "--out", release,
        "--size", "16x16", "--variants", "external,fused", "--quiet",
    )  # fmt: skip
    assert (result.returncode, result.stderr) == (0, "")
    # One check: a failing check costs seconds of Hypothesis shrinking.
    result, document = run_gate(release, tmp_path, "-k", "test_reference and fused.cbn-on")
    assert result.returncode == 1, result.stdout + result.stderr
    assert document["passed"] is False
    (variant,) = [v for v in document["variants"] if v["id"] == "nan_net.fused.cbn-on"]
    (check,) = variant["checks"]
    assert (variant["verdict"], check["verdict"]) == ("fail", "fail")
    assert check["metrics"]["status"] == "nonfinite" and "NONFINITE" in check["message"]


# --- kill -9: nothing half-written, nothing stale trusted -----------------------------------


#: A child that writes ``document`` to ``path`` with ``writer`` and is killed (SIGKILL) inside
#: fsync, after the bytes went to the temporary file and before the rename.
_KILLED_WRITER = """
import json, os, signal, sys
from pathlib import Path
os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)
path, document = Path(sys.argv[1]), json.loads(sys.argv[2])
if sys.argv[3] == "gate.json":
    from mge_harness.equivalence.record import write_json_atomic
    write_json_atomic(path, document)
elif sys.argv[3] == "bench sidecar":
    from mge_harness.bench.state import write_not_measured
    write_not_measured(path.parent, document)
else:
    import numpy as np
    from mge_harness.equivalence.record import save_counterexample
    save_counterexample(path, path.parent, np.zeros((1, 4, 4, 3), np.uint8), document)
"""


@pytest.mark.parametrize("writer", ["gate.json", "bench sidecar", "counterexample"])
def test_kill_9_while_writing_leaves_the_old_file(tmp_path, writer):
    from mge_harness.bench.state import sidecar_name

    new = {"datetime": "2026-01-02T03:04:05", "not_measured": [], "passed": True}
    name = {"gate.json": "gate.json", "bench sidecar": sidecar_name(new["datetime"])}
    path = tmp_path / name.get(writer, "reference.npy")
    old = b'{"old": true}\n'
    path.write_bytes(old)
    result = run("-c", _KILLED_WRITER, path, json.dumps(new), writer)
    assert result.returncode == -signal.SIGKILL
    assert path.read_bytes() == old
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != path.name]
    assert all(name.startswith(".") and name.endswith(".tmp") for name in leftovers), leftovers


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _status(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("status")
    except (OSError, ValueError):
        return None


def _start(*args) -> subprocess.Popen:
    """``python ARGS`` in its own process group, so that kill -9 takes its children too."""
    return subprocess.Popen(
        [sys.executable, *map(str, args)], cwd=ROOT, env=child_env(), start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _kill_9(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def test_kill_9_during_a_gate_run_leaves_a_gate_json_that_fails(tiny_release, tmp_path):
    from mge_harness.equivalence.record import gate_document
    from mge_harness.reports.synthetic import demo_run, save

    gate = tmp_path / "gate.json"
    old = gate_document(str(tiny_release), "tiny", "ci", [], status="complete")
    old["passed"] = True  # an earlier run that passed
    gate.write_text(json.dumps(old))
    process = _start(
        "-m", "pytest", "equivalence/", "--release", tiny_release, "--hypothesis-profile", "ci",
        "-p", "no:cacheprovider", "-v", "--gate-json", gate,
        "--counterexamples", tmp_path / "counterexamples",
    )  # fmt: skip
    try:
        _wait_for(lambda: "PASSED" in process.stdout.readline(), 120, "a check to pass")
        assert _status(gate) == "incomplete"  # checks are running
    finally:
        _kill_9(process)
    document = json.loads(gate.read_text())  # complete JSON, not half-written
    assert (document["status"], document["passed"], document["variants"]) == (
        "incomplete",
        False,
        [],
    )
    storage = tmp_path / "benchmarks"
    save(storage, demo_run("cpu", 1), 1)
    result = run(
        "-m", "reports", "--benchmarks", storage, "--gate", gate, "--out", tmp_path / "out",
        "--require-gate-pass",
    )  # fmt: skip
    assert result.returncode == 1 and result.stderr.startswith("gate FAILED: "), result.stderr


def test_kill_9_during_a_benchmark_session_leaves_no_saved_run(tiny_release, tmp_path):
    from mge_harness.reports.synthetic import demo_run, save

    storage = tmp_path / "benchmarks"
    saved = [save(storage, demo_run("cpu", 1), 1)]  # an earlier run
    process = _start(
        "-m", "pytest", "bench/", "--release", tiny_release, "-p", "no:cacheprovider", "-v",
        "--batch-sizes", "1", "--benchmark-autosave", "--benchmark-storage", storage,
    )  # fmt: skip
    try:
        _wait_for(lambda: "PASSED" in process.stdout.readline(), 120, "a measured benchmark")
    finally:
        _kill_9(process)
    assert sorted(storage.rglob("*.json")) == saved  # the killed session saved nothing
    assert not [p for p in storage.rglob("*") if p.name.endswith(".tmp")]
    result = run("-m", "reports", "--benchmarks", storage, "--out", tmp_path / "out")
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert "0001" in (tmp_path / "out" / "report.md").read_text()


# --- two sessions, one cache ----------------------------------------------------------------


def test_two_sessions_export_the_builtin_release_into_one_cache(tmp_path):
    """A gate session with two xdist workers and a benchmark session start together on an empty
    cache: three processes export the built-in release at once, one at a time under the lock."""
    cache = tmp_path / "cache"
    env = child_env(MGE_HARNESS_CACHE=str(cache))
    gate = subprocess.Popen(
        [sys.executable, "-m", "pytest", "equivalence/", "--model", "tiny", "-n", "2",
         "-k", "test_determinism", "--hypothesis-profile", "ci", "-p", "no:cacheprovider", "-q",
         "--gate-json", str(tmp_path / "gate.json"),
         "--counterexamples", str(tmp_path / "counterexamples")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    bench = subprocess.Popen(
        [sys.executable, "-m", "pytest", "bench/", "--model", "tiny", "--collect-only", "-q",
         "-p", "no:cacheprovider"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    outputs = [p.communicate(timeout=600)[0] for p in (gate, bench)]
    assert [gate.returncode, bench.returncode] == [0, 0], outputs
    release = cache / "releases" / "tiny"
    manifest = load_manifest(release)  # every file verified against its recorded sha256
    assert len(manifest.variants) == 5
    assert sorted(p.name for p in release.iterdir() if p.name.startswith(".")) == [".export.lock"]
    for entry in manifest.variants:
        assert f"test_latency[{entry.id}-b1-cpu-model]" in outputs[1]
    document = json.loads((tmp_path / "gate.json").read_text())
    assert document["status"] == "partial" and len(document["variants"]) == 5  # -k: partial
    assert {c["verdict"] for v in document["variants"] for c in v["checks"]} == {"pass"}
