"""``pytest bench/`` end to end on the tiny model, in child pytest sessions.

Grid selection and option parsing as pytest sees them, the CUDA skip, crash isolation with a
planted variant that really segfaults MegEngine Lite, and one-line errors for bad options.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mge_harness.bench.cases import build_cases
from mge_harness.bench.grid import GRID_ENV, full_grid, quick_grid, select_grid
from mge_harness.exporters.manifest import load_manifest
from tests.hardening_models import dump_nchw44_crasher

ROOT = Path(__file__).resolve().parent.parent


def run_bench(*args, env=None):
    """``pytest bench/ ARGS`` in a child process, with the grid environment variable unset."""
    # Nothing of the parent session leaks in: under pytest-xdist the PYTEST_XDIST_* variables
    # would make the child believe it is a worker, and pytest-benchmark then saves nothing.
    environ = {k: v for k, v in os.environ.items() if k != GRID_ENV and not k.startswith("PYTEST_")}
    environ.update(PYTHONPATH=str(ROOT), **(env or {}))
    command = [sys.executable, "-m", "pytest", "bench/", "-p", "no:cacheprovider", "-q", "-rs"]
    return subprocess.run(
        [*command, *map(str, args)],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
    )


def collected_ids(result) -> list[str]:
    return re.findall(r"::test_latency\[(.+)\]$", result.stdout, flags=re.MULTILINE)


def saved_files(storage: Path) -> tuple[list[dict], list[dict]]:
    """(saved runs, not-measured sidecars) under a pytest-benchmark storage folder."""
    runs = [
        json.loads(p.read_text()) for p in sorted(storage.glob("*/[0-9][0-9][0-9][0-9]_*.json"))
    ]
    sidecars = [json.loads(p.read_text()) for p in sorted(storage.glob("*/*.not-measured.json"))]
    return runs, sidecars


@pytest.fixture(scope="module")
def tiny_release() -> Path:
    from mge_harness.exporters.release import builtin_release

    return builtin_release("tiny", progress=None)


# --- grid selection ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "grid"),
    [((), {}, quick_grid), (("--full-grid",), {}, full_grid), ((), {GRID_ENV: "full"}, full_grid)],
    ids=["default-quick", "flag-full", "env-full"],
)
def test_collects_the_selected_grid(tiny_release, args, env, grid):
    result = run_bench("--release", tiny_release, "--collect-only", *args, env=env)
    assert result.returncode == 0, result.stderr
    variants = load_manifest(tiny_release).variants
    assert collected_ids(result) == [case.id for case in build_cases(variants, grid())]


def test_batch_and_device_options_shape_the_collected_ids(tiny_release):
    result = run_bench(
        "--release", tiny_release, "--collect-only", "--batch-sizes", "2,8", "--devices", "cpu-2t"
    )
    assert result.returncode == 0, result.stderr
    ids = collected_ids(result)
    variants = [entry.id for entry in load_manifest(tiny_release).variants]
    assert sorted(ids) == sorted(
        f"{v}-b{b}-cpu-2t-{m}" for v in variants for b in (2, 8) for m in ("model", "e2e")
    )


# --- CUDA skip -----------------------------------------------------------------------------


def test_cuda_config_is_collected_and_skipped_with_the_reason(tiny_release, tmp_path):
    from mge_harness.exporters.devices import cuda_skip_reason

    reason = cuda_skip_reason()
    if reason is None:
        pytest.skip("a CUDA device exists here, so nothing is skipped")
    result = run_bench(
        "--release", tiny_release, "--devices", "cuda", "--batch-sizes", "1",
        "--benchmark-autosave", "--benchmark-storage", tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    cases = build_cases(
        load_manifest(tiny_release).variants, select_grid(batch_sizes="1", devices="cuda")
    )
    assert f"{len(cases)} skipped" in result.stdout
    for entry in load_manifest(tiny_release).variants:
        assert f"{entry.id} on cuda: {reason}" in result.stdout
    runs, (sidecar,) = saved_files(tmp_path)
    assert runs == []
    assert {(row["variant"], row["mode"]) for row in sidecar["not_measured"]} == {
        (c.variant.id, c.mode) for c in cases
    }
    assert {(row["device"], row["status"], row["reason"]) for row in sidecar["not_measured"]} == {
        ("cuda", "skipped", reason)
    }


# --- crash isolation -----------------------------------------------------------------------


def _external_entry(variant_id: str, file: str, fuse: bool) -> dict:
    return {
        "id": variant_id,
        "file": file,
        "preprocessing": "external",
        "fuse_conv_bias_nonlinearity": fuse,
    }


@pytest.fixture(scope="module")
def crash_release(tiny_release, tmp_path_factory) -> Path:
    """A hand-written release: a healthy tiny variant, one that segfaults Lite, one unloadable."""
    tiny = load_manifest(tiny_release)
    healthy = tiny.variant("tiny.external.cbn-off")
    folder = tmp_path_factory.mktemp("crash-release")
    shutil.copy(healthy.path, folder / healthy.file)
    dump_nchw44_crasher(folder / "tiny.nchw44.mge", tiny.preprocess.size)
    (folder / "tiny.garbage.mge").write_bytes(np.random.default_rng(0).bytes(4096))
    variants = [
        _external_entry(healthy.id, healthy.file, False),
        _external_entry("tiny.nchw44", "tiny.nchw44.mge", True),
        _external_entry("tiny.garbage", "tiny.garbage.mge", False),
    ]
    manifest = {"model": "tiny", "preprocess": tiny.preprocess.to_dict(), "variants": variants}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_a_crashing_variant_is_reported_and_the_session_goes_on(crash_release, tmp_path):
    result = run_bench(
        "--release", crash_release, "--batch-sizes", "1",
        "--benchmark-autosave", "--benchmark-storage", tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    crash = "crashed: SIGSEGV (exit -11) in probe"
    skipped = re.search(
        r"SKIPPED \[3\] bench/test_latency\.py:\d+: tiny\.nchw44 on cpu: (.*)", result.stdout
    )
    assert skipped and skipped.group(1) == crash, result.stdout
    assert "3 passed, 6 skipped" in result.stdout
    (run,), (sidecar,) = saved_files(tmp_path)
    measured = {
        (b["extra_info"]["variant"], b["extra_info"]["mode"], b["extra_info"]["status"])
        for b in run["benchmarks"]
    }
    modes = ("model", "raw", "e2e")
    assert measured == {("tiny.external.cbn-off", mode, "ok") for mode in modes}
    assert all(len(b["stats"]["data"]) == b["stats"]["rounds"] >= 30 for b in run["benchmarks"])
    rows = {(r["variant"], r["mode"]): r for r in sidecar["not_measured"]}
    assert set(rows) == {(v, mode) for v in ("tiny.nchw44", "tiny.garbage") for mode in modes}
    for mode in modes:
        assert (rows["tiny.nchw44", mode]["status"], rows["tiny.nchw44", mode]["reason"]) == (
            "crashed",
            crash,
        )
        garbage = rows["tiny.garbage", mode]
        assert garbage["status"] == "error"
        assert garbage["reason"].startswith("probe failed: ")
        assert "tiny.garbage.mge: MegEngine Lite cannot load it" in garbage["reason"]
    assert sidecar["datetime"] == run["datetime"]


# --- bad options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("--devices", "cpu,gpu"), {}, "--devices: unknown device config 'gpu'; known configs: "),
        (
            ("--batch-sizes", "0"),
            {},
            "--batch-sizes: expected positive integers separated by commas",
        ),
        (("--batch-sizes", "1,x"), {}, "got 'x' in '1,x'"),
        (("--probe-timeout", "0"), {}, "--probe-timeout: expected a positive number of seconds"),
        ((), {GRID_ENV: "huge"}, "MGE_BENCH_GRID: expected 'quick' or 'full', got 'huge'"),
    ],
    ids=["unknown-device", "batch-zero", "batch-not-a-number", "probe-timeout", "grid-env"],
)
def test_bad_options_are_one_line_usage_errors(tiny_release, args, env, message):
    result = run_bench("--release", tiny_release, *args, env=env)
    _assert_one_line_usage_error(result, message)


def test_missing_release_folder_is_a_one_line_usage_error(tmp_path):
    result = run_bench("--release", tmp_path / "nowhere")
    _assert_one_line_usage_error(result, f"{tmp_path / 'nowhere'}: release folder does not exist")


def _assert_one_line_usage_error(result, message):
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    lines = [
        line
        for line in result.stderr.splitlines()
        if line.strip() and not line.startswith(("info:", "debug:"))
    ]
    assert len(lines) == 1 and lines[0].startswith("ERROR: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stdout + result.stderr


# --- CPU time beside wall time ---------------------------------------------------------------


def test_every_timed_case_records_its_cpu_time_and_the_report_shows_it(tiny_release, tmp_path):
    result = run_bench(
        "--release", tiny_release, "--devices", "cpu,cpu-2t", "--batch-sizes", "4",
        "-k", "external.cbn-off and model", "--benchmark-autosave",
        "--benchmark-storage", tmp_path / "runs", "--benchmark-min-rounds", "3",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (run,), _ = saved_files(tmp_path / "runs")
    infos = {b["extra_info"]["device"]: b["extra_info"] for b in run["benchmarks"]}
    for info in infos.values():
        assert info["cpu_s"] > 0 and info["wall_s"] > 0
        assert info["cpu_per_wall"] == pytest.approx(info["cpu_s"] / info["wall_s"])
    # One thread keeps to about one core; the report shows the figure.
    assert infos["cpu"]["cpu_per_wall"] < 1.9
    from mge_harness.reports.cli import main

    out = tmp_path / "report"
    assert main(["--benchmarks", str(tmp_path / "runs"), "--out", str(out)]) == 0
    assert "cpu/wall" in (out / "report.md").read_text()
