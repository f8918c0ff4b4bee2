"""reports: the tidy table, speedups, device merge and the ``python -m reports`` command.

Saved runs are built in tmp_path from seeded timings (``reports.synthetic``); every expected value
is recomputed here from those timings with numpy rather than hard-coded.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mge_harness.reports import formatting as fmt
from mge_harness.reports import synthetic as syn
from mge_harness.reports.build import write_atomic, write_report
from mge_harness.reports.cli import main
from mge_harness.reports.errors import ReportError
from mge_harness.reports.sources import load_runs
from mge_harness.reports.speedups import FUSED_VS_EXTERNAL, FUSION_ON_VS_OFF, device_pairings
from mge_harness.reports.table import build_table, current_view

REPO = Path(__file__).resolve().parents[1]
EXTERNAL, FUSED = "resnet18.external.cbn-on", "resnet18.fused.cbn-on"


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "reports", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def call_main(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``reports.cli.main`` in this process (faster than ``run_cli``), same result shape."""
    out, err, previous = io.StringIO(), io.StringIO(), Path.cwd()
    os.chdir(cwd)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(previous)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def assert_one_line_error(done: subprocess.CompletedProcess, *fragments: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def table_of(storage: Path, gate: dict | None = None) -> pd.DataFrame:
    return build_table(load_runs([storage]).runs, gate)


def test_statistics_are_computed_from_the_raw_timings(tmp_path):
    samples = syn.timings(0.030, 0.05, rounds=41, seed=1)
    bench = syn.benchmark(FUSED, samples, batch=4)
    syn.save(tmp_path, syn.saved_run([bench]), 1)

    row = table_of(tmp_path).iloc[0]

    data = np.asarray(samples)
    assert row["timings"] == "raw"
    assert row["rounds"] == data.size
    assert row["median"] == pytest.approx(np.median(data), rel=1e-12)
    assert row["p90"] == pytest.approx(np.percentile(data, 90), rel=1e-12)
    assert row["p99"] == pytest.approx(np.percentile(data, 99), rel=1e-12)
    q1, q3 = np.percentile(data, [25, 75])
    assert row["iqr"] == pytest.approx(q3 - q1, rel=1e-12)
    assert row["cv"] == pytest.approx(data.std(ddof=1) / data.mean(), rel=1e-12)
    assert row["images_per_s"] == pytest.approx(4 / np.median(data), rel=1e-12)
    assert (row["variant"], row["device"], row["mode"], row["batch"]) == (FUSED, "cpu", "model", 4)


def test_without_raw_timings_the_saved_stats_are_used_and_the_report_says_so(tmp_path):
    samples = syn.timings(0.030, 0.05, rounds=20, seed=2)
    bench = syn.benchmark(FUSED, samples, save_data=False)
    syn.save(tmp_path / "runs", syn.saved_run([bench]), 1)

    row = table_of(tmp_path / "runs").iloc[0]

    assert row["timings"] == "summary"
    assert row["median"] == bench["stats"]["median"]
    assert row["iqr"] == bench["stats"]["iqr"]
    assert np.isnan(row["p90"]) and np.isnan(row["p99"])
    written = write_report([tmp_path / "runs"], out=tmp_path / "out")
    report = (tmp_path / "out" / "report.md").read_text()
    assert "1 row(s) were saved without raw timings" in report
    assert written.table["timings"].tolist() == ["summary"]


def test_noisy_rows_are_flagged_above_the_threshold(tmp_path):
    quiet = syn.benchmark(FUSED, syn.timings(0.03, 0.02, 30, seed=3))
    noisy = syn.benchmark(EXTERNAL, syn.timings(0.03, 0.40, 30, seed=4))
    syn.save(tmp_path, syn.saved_run([quiet, noisy]), 1)
    runs = load_runs([tmp_path]).runs

    table = build_table(runs, noise_cv=0.10).set_index("variant")
    assert table.loc[FUSED, "cv"] < 0.10 < table.loc[EXTERNAL, "cv"]
    assert not table.loc[FUSED, "noisy"] and table.loc[EXTERNAL, "noisy"]
    lenient = build_table(runs, noise_cv=table.loc[EXTERNAL, "cv"] + 0.01)
    assert not lenient["noisy"].any()


def test_speedups_pair_fused_with_external_and_fusion_on_with_off(tmp_path):
    base = np.asarray(syn.timings(0.030, 0.03, 31, seed=5))
    scales = {"external.cbn-off": 1.30, "external.cbn-on": 1.20, "fused.cbn-off": 1.10}
    benches = [
        syn.benchmark(f"resnet18.{name}", (base * scales.get(name, 1.0)).tolist(), mode=mode)
        for name in (*scales, "fused.cbn-on")
        for mode in ("e2e", "model")
    ]
    syn.save(tmp_path, syn.saved_run(benches), 1)
    view = current_view(table_of(tmp_path))

    # Only e2e pairs fused with external: in model mode the inputs differ (raw frame vs tensor).
    assert set(FUSED_VS_EXTERNAL.ratios(view)["mode"]) == {"e2e"}
    assert set(FUSION_ON_VS_OFF.ratios(view)["mode"]) == {"e2e", "model"}
    fused = FUSED_VS_EXTERNAL.ratios(view).set_index("fuse_cbn")
    assert fused.loc[True, "speedup"] == pytest.approx(1.20, rel=1e-9)
    assert fused.loc[False, "speedup"] == pytest.approx(1.30 / 1.10, rel=1e-9)
    fusion = FUSION_ON_VS_OFF.ratios(view).query("mode == 'e2e'").set_index("preprocessing")
    assert fusion.loc["fused", "speedup"] == pytest.approx(1.10, rel=1e-9)
    q1, q3 = np.percentile(base, [25, 75])
    assert fusion.loc["fused", "band_low"] == pytest.approx(1.10 * q1 / q3, rel=1e-9)
    assert fusion.loc["fused", "band_high"] == pytest.approx(1.10 * q3 / q1, rel=1e-9)
    assert bool(fusion.loc["fused", "clear"]) == (1.10 * q1 / q3 > 1)


def test_runs_from_two_devices_merge_into_per_variant_speedups(tmp_path):
    cpu_samples = syn.timings(0.032, 0.03, 25, seed=6)
    cuda_samples = syn.timings(0.004, 0.03, 25, seed=7)
    cpu = syn.saved_run([syn.benchmark(FUSED, cpu_samples, batch=8)], node="ci-runner")
    cuda = syn.saved_run(
        [syn.benchmark(FUSED, cuda_samples, batch=8, device="cuda")],
        node="gpu-box",
        when="2026-01-05T00:00:00+00:00",
        cuda={"devices": [{"name": "Tesla T4"}]},
    )
    # Same machine folder and run number on both hosts: they are kept apart by their folders.
    syn.save(tmp_path / "cpu-box", cpu, 1)
    syn.save(tmp_path / "gpu-box", cuda, 1)

    written = write_report(
        [tmp_path / "cpu-box", tmp_path / "gpu-box"], out=tmp_path / "out", gate=None
    )

    view = current_view(written.table)
    [pairing] = device_pairings(view, "cpu")
    [row] = pairing.ratios(view).to_dict("records")
    expected = np.median(cpu_samples) / np.median(cuda_samples)
    assert (row["benchmark"], row["batch"]) == (FUSED, 8)
    assert row["speedup"] == pytest.approx(expected, rel=1e-12)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "**cuda vs cpu**" in report
    assert f"{expected:.2f}x" in report
    assert "Tesla T4" in report
    assert (tmp_path / "out" / "speedup_devices.png").read_bytes().startswith(b"\x89PNG")


def test_current_view_keeps_the_newest_run_of_each_configuration(tmp_path):
    old = syn.timings(0.030, 0.03, 20, seed=8)
    new = syn.timings(0.025, 0.03, 20, seed=9)
    syn.save(tmp_path, syn.saved_run([syn.benchmark(FUSED, new)], when="2026-02-01T00:00"), 1)
    syn.save(tmp_path, syn.saved_run([syn.benchmark(FUSED, old)], when="2026-01-01T00:00"), 2)

    table = table_of(tmp_path)
    view = current_view(table)

    assert len(table) == 2 and len(view) == 1
    assert view.iloc[0]["median"] == pytest.approx(np.median(new))


def test_crashed_configs_and_foreign_benchmarks_are_listed_separately(tmp_path):
    ok = syn.benchmark(FUSED, syn.timings(0.03, 0.03, 20, seed=10))
    crashed = syn.benchmark(EXTERNAL, None, batch=8, status="crashed", reason="SIGSEGV")
    foreign = {"name": "test_sum", "fullname": "other.py::test_sum", "stats": ok["stats"]}
    syn.save(tmp_path / "runs", syn.saved_run([ok, crashed, foreign]), 1)
    sidecar = {"not_measured": [{"variant": FUSED, "batch": 64, "device": "cuda", "mode": "e2e",
                                 "status": "timeout", "reason": "exceeded 600 s"}]}  # fmt: skip
    (tmp_path / "runs" / "probe.not-measured.json").write_text(json.dumps(sidecar))

    written = write_report([tmp_path / "runs"], out=tmp_path / "out")

    statuses = dict(zip(written.table["key"], written.table["status"], strict=True))
    assert statuses[f"{EXTERNAL} [cpu model b=8]"] == "crashed"
    assert statuses[f"{FUSED} [cuda e2e b=64]"] == "timeout"
    assert statuses["test_sum"] == "ok"
    report = (tmp_path / "out" / "report.md").read_text()
    not_measured = report.split("## Not measured")[1].split("##")[0]
    assert (
        "| crashed | SIGSEGV |" in not_measured and "| timeout | exceeded 600 s |" in not_measured
    )
    latency = report.split("## Latency")[1].split("## ")[0]
    assert EXTERNAL not in latency and "SIGSEGV" not in latency
    assert "other.py::test_sum" in report.split("## Other benchmarks")[1]


def test_gate_verdicts_and_metrics_sit_beside_the_speed(tmp_path):
    syn.save(tmp_path, syn.saved_run([syn.benchmark(FUSED, syn.timings(0.03, 0.03, 9, 11))]), 1)
    gate = syn.gate({FUSED: "pass", "resnet18.identity-warp.cbn-on": "xfail"})
    gate["variants"][0]["checks"].append(
        {"check": "top5", "verdict": "pass", "metrics": {"max_abs": 7e-5, "cosine": 0.99}}
    )

    row = table_of(tmp_path, gate).iloc[0]

    assert row["equivalence"] == "pass"
    assert row["max_abs"] == max(3e-5, 7e-5) and row["cosine"] == min(0.9999999, 0.99)


def test_cli_writes_every_output_and_reads_the_default_gate(tmp_path):
    storage, gate_path = syn.demo_storage(tmp_path, rounds=8)
    (tmp_path / "results").mkdir()
    gate_path.rename(tmp_path / "results" / "gate.json")

    done = run_cli(cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    out = tmp_path / "results"
    names = {p.name for p in out.iterdir()}
    expected = {"report.md", "report.html", "summary.csv", "speedup.png", "speedup_devices.png"}
    expected |= {
        f"{kind}_{dev}.png" for kind in ("latency", "throughput") for dev in ("cpu", "cuda")
    }
    assert names == expected | {"gate.json"}  # no temporary files left behind
    summary = pd.read_csv(out / "summary.csv")
    runs = load_runs([storage]).runs
    assert len(summary) == sum(len(run.benchmarks) for run in runs)
    assert (
        "Equivalence gate: **PASSED** (from results/gate.json)" in (out / "report.md").read_text()
    )


def test_corrupt_and_foreign_files_are_skipped_with_a_warning(tmp_path):
    samples = syn.timings(0.03, 0.03, 15, seed=12)
    good = syn.save(tmp_path / "runs", syn.saved_run([syn.benchmark(FUSED, samples)]), 1)
    corrupt = good.parent / "0002_broken.json"
    corrupt.write_text('{"benchmarks": [')
    foreign = good.parent / "package.json"
    foreign.write_text('{"name": "not a benchmark"}')

    done = run_cli("--benchmarks", "runs", "--out", "out", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2
    assert any(str(corrupt.relative_to(tmp_path)) in w and "not valid JSON" in w for w in warnings)
    assert any("package.json" in w and "not a pytest-benchmark run" in w for w in warnings)
    report = (tmp_path / "out" / "report.md").read_text()
    assert f"| {fmt.ms(np.median(samples))} |" in report
    assert "0002_broken.json" in report.split("## Latency")[0]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("--benchmarks", "empty"), ("no saved benchmark runs found in empty",)),
        (("--benchmarks", "missing"), ("missing: no such file or folder",)),
        (("--benchmarks", "runs", "--gate", "nope.json"), ("nope.json: no such file",)),
        (("--benchmarks", "runs", "--fail-on", "median:10%"), ("--fail-on needs --compare",)),
        (("--no-such-option",), ("unrecognized arguments: --no-such-option",)),
    ],
)
def test_user_mistakes_are_one_line_errors(tmp_path, args, fragments):
    (tmp_path / "empty").mkdir()
    syn.save(tmp_path / "runs", syn.saved_run([syn.benchmark(FUSED, [0.01, 0.011])]), 1)
    assert_one_line_error(call_main(*args, cwd=tmp_path), *fragments)


def test_a_user_mistake_exits_2_without_traceback_from_the_command_line(tmp_path):
    done = run_cli("--benchmarks", "missing", cwd=tmp_path)
    assert_one_line_error(done, "missing: no such file or folder")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (33.5081, "33.51"),
        (245.16, "245.2"),
        (0.0062, "0.006200"),
        (12345.6, "12346"),
        (1.0, "1.000"),
    ],
)
def test_significant_keeps_four_digits_without_exponents(value, text):
    assert fmt.significant(value) == text


def test_load_runs_refuses_folders_with_only_unreadable_files(tmp_path):
    (tmp_path / "x.json").write_text("[1, 2]")
    with pytest.raises(ReportError, match="no saved benchmark runs found"):
        load_runs([tmp_path])


def test_write_atomic_leaves_the_old_file_when_writing_fails(tmp_path):
    target = write_atomic(tmp_path / "report.md", b"old")
    with pytest.raises(TypeError):
        write_atomic(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]
