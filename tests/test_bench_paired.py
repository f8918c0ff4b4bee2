"""Paired timing (bench.paired), paired sessions of pytest bench/, the canary, and the paired rules.

The planted-slowdown tests run real pytest-benchmark sessions in child processes whose two sides
are test doubles that advance ``bench.paired``'s clock (a fake one: exact, jittered and
sometimes preempted, so the verdicts do not depend on how busy the machine is), so the whole path
is exercised: interleaved rounds, the bootstrap interval saved in ``extra_info``,
``python -m reports --paired`` reading it. Real spins are measured in ``bench.paired``'s doc.
"""

from __future__ import annotations

import json
import re
import textwrap

import numpy as np
import pytest

from mge_harness.bench import canary
from mge_harness.bench.grid import quick_grid
from mge_harness.bench.paired import Alternator, build_paired_cases, interleave, ratio_of_medians
from mge_harness.exporters.manifest import load_manifest
from mge_harness.reports.compare import check_paired
from mge_harness.reports.rules import RegressionRule
from mge_harness.reports.sources import read_run
from tests.test_bench_session import ROOT, run_bench, saved_files
from tests.test_reports import assert_one_line_error, call_main


class FakeTime:
    """``bench.paired``'s clock in these tests: test doubles advance it, so timings are exact
    and the tests do not depend on how busy the machine is (timed unit tests flake under
    xdist; real spins are measured in the module docstring of ``bench.paired``). A call of
    ``seconds`` takes ``seconds`` x a seeded log-normal jitter (5 %), and 5 % of calls are
    preempted (x5), as on a busy machine."""

    def __init__(self, seed: int = 0):
        self.now = 0.0
        self.rng = np.random.default_rng(seed)

    def perf_counter(self) -> float:
        return self.now

    process_time = perf_counter

    def spin(self, seconds: float):
        def call():
            preempted = 5.0 if self.rng.random() < 0.05 else 1.0
            self.now += seconds * float(np.exp(self.rng.normal(0, 0.05))) * preempted

        return call


@pytest.fixture
def clock(monkeypatch) -> FakeTime:
    from mge_harness.bench import paired

    fake = FakeTime()
    monkeypatch.setattr(paired, "time", fake)
    return fake


# --- the loop and the ratio -----------------------------------------------------------------


def test_rounds_alternate_and_flip_order():
    calls = []
    alternator = interleave(lambda: calls.append("A"), lambda: calls.append("B"), 4, warmup=1)
    assert "".join(calls) == "AB" + "ABBAABBA"  # warm-up, then the order flips every round
    assert alternator.wall.shape == (4, 2) and alternator.rounds == 4


def test_ratio_of_medians_sees_a_planted_slowdown_and_not_its_absence(clock):
    slower = interleave(clock.spin(0.001), clock.spin(0.00115), 100, warmup=1)
    result = ratio_of_medians(slower.wall[:, 0], slower.wall[:, 1])
    assert result.excludes(1.0) and result.low > 1.10, result
    assert result.low <= result.ratio <= result.high
    same = interleave(clock.spin(0.001), clock.spin(0.001), 100, warmup=1)
    even = ratio_of_medians(same.wall[:, 0], same.wall[:, 1])
    # A 95 % interval misses the truth 1 time in 20, so the check is that it stays near 1.
    assert 0.95 < even.low <= even.high < 1.05, even


def test_ratio_interval_is_seeded_and_resamples_whole_rounds():
    rng = np.random.default_rng(5)
    drift = rng.uniform(1, 3, 60)  # both sides slowed together, round by round
    base, cand = 0.01 * drift, 0.0105 * drift * rng.uniform(0.99, 1.01, 60)
    first, again = ratio_of_medians(base, cand), ratio_of_medians(base, cand)
    assert first == again
    # Independent resampling would smear the shared drift into a far wider interval.
    unpaired = ratio_of_medians(base, rng.permutation(cand))
    assert first.high - first.low < (unpaired.high - unpaired.low) / 3


def test_ratio_rejects_unpaired_series():
    with pytest.raises(ValueError, match="two equal 1-d timing series"):
        ratio_of_medians([1.0, 2.0, 3.0], [1.0, 2.0])


# --- rules on paired ratios -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "low", "fails"),
    [("median:10%", 1.12, True), ("median:10%", 1.08, False), ("median:0.001", 1.12, True),
     ("median:0.002", 1.12, False), ("min:10%", 1.5, False)],
)  # fmt: skip
def test_a_paired_ratio_fails_only_when_its_whole_interval_is_beyond(rule, low, fails):
    # baseline median 10 ms: low 1.12 is 1.2 ms slower at the interval's low end
    assert RegressionRule.parse(rule).interval_exceeded(low, 0.010) is fails


# --- paired sessions ------------------------------------------------------------------------

PLANTED = """
import numpy as np

from mge_harness.bench import paired
from mge_harness.bench.grid import quick_grid
from mge_harness.bench.paired import time_pair

class FakeTime:  # the clock of bench.paired, advanced by the doubles (see the test module)
    def __init__(self):
        self.now, self.rng = 0.0, np.random.default_rng(0)
    def perf_counter(self):
        return self.now
    process_time = perf_counter

CLOCK = FakeTime()
paired.time = CLOCK

def spin(seconds):
    def call():
        preempted = 5.0 if CLOCK.rng.random() < 0.05 else 1.0
        CLOCK.now += seconds * float(np.exp(CLOCK.rng.normal(0, 0.05))) * preempted
    return call

def test_planted(benchmark):
    benchmark.extra_info["paired"] = {{"kind": "planted", "baseline": {{"variant": "A"}},
                                      "candidate": {{"variant": "B"}}}}
    time_pair(benchmark, quick_grid(), spin(0.001), spin(0.001 * {factor}))
"""


def planted_run(tmp_path, factor: float):
    """A saved pytest-benchmark run of one paired benchmark whose candidate spins ``factor``x."""
    import os
    import subprocess
    import sys

    folder = tmp_path / f"planted-{factor}"
    folder.mkdir()
    (folder / "test_planted.py").write_text(textwrap.dedent(PLANTED.format(factor=factor)))
    storage = folder / "storage"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    environ["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(folder / "test_planted.py"), "-q",
         "-p", "no:cacheprovider", f"--benchmark-storage=file://{storage}", "--benchmark-save=p"],
        cwd=folder, env=environ, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (path,) = storage.glob("*/0001_*.json")
    return path


def test_planted_15_percent_slowdown_fails_median_10_percent_with_interval_excluding_1(tmp_path):
    path = planted_run(tmp_path, 1.15)
    check = check_paired(read_run(path), [RegressionRule.parse("median:10%")])
    (row,) = check.table.to_dict("records")
    assert row["low"] > 1.10 and row["excludes_1"], row
    assert not check and "at the interval's low end" in check.failures[0]
    done = call_main("--paired", str(path), "--fail-on", "median:10%", cwd=tmp_path)
    assert done.returncode == 1 and "FAILED" in done.stdout, done.stdout


def test_identical_sides_pass_median_10_percent(tmp_path):
    path = planted_run(tmp_path, 1.0)
    done = call_main("--paired", str(path), "--fail-on", "median:10%", cwd=tmp_path)
    assert done.returncode == 0 and "No rule failed." in done.stdout, done.stdout


def test_paired_on_a_run_without_pairs_is_a_one_line_error(tmp_path):
    path = tmp_path / "0001_plain.json"
    path.write_text(json.dumps({"benchmarks": [{"name": "x", "stats": {}}]}))
    assert_one_line_error(call_main("--paired", str(path), cwd=tmp_path), "no paired benchmarks")


@pytest.fixture(scope="module")
def tiny_release():
    from mge_harness.exporters.release import builtin_release

    return builtin_release("tiny", progress=None)


def test_paired_cases_of_each_kind(tiny_release):
    manifest = load_manifest(tiny_release)
    grid = quick_grid()
    ids = [v.id for v in manifest.variants]
    by_release = build_paired_cases("release", manifest, grid, baseline_manifest=manifest)
    assert len(by_release) == len(ids) * len(grid.devices) * len(grid.batch_sizes) * 2
    (pair,) = {(c.baseline.key, c.candidate.key) for c in by_release[:1]}
    assert pair[0][0] == pair[1][0]  # same variant id on both sides
    by_device = build_paired_cases("device", manifest, grid, pair=("cpu", "cpu-2t"))
    assert {(c.baseline.device, c.candidate.device) for c in by_device} == {("cpu", "cpu-2t")}
    by_variant = build_paired_cases("variant", manifest, grid, pair=(ids[0], ids[1]))
    assert {c.id.split("-vs-")[0] for c in by_variant} == {ids[1]}
    assert len({c.id for c in by_release + by_device + by_variant}) == len(
        by_release + by_device + by_variant
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [(("--pair-devices", "cpu"), "--pair-devices 'cpu': expected two different names"),
     (("--pair-devices", "cpu,gpu9"), "--pair-devices: "),
     (("--pair-variants", "tiny.fused.cbn-on,nope"), "--pair-variants: "),
     (("--pair-devices", "cpu,cpu-2t", "--pair-variants", "a,b"), "expected one of them")],
)  # fmt: skip
def test_bad_paired_options_are_one_line_errors(tiny_release, args, message):
    result = run_bench("--release", tiny_release, "--collect-only", *args)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and message in errors[0], result.stderr


def test_a_paired_session_saves_ratios_and_the_canary(tiny_release, tmp_path):
    a, b = "tiny.external.cbn-on", "tiny.fused.cbn-on"
    storage = tmp_path / "storage"
    result = run_bench(
        "--release", tiny_release, "--pair-variants", f"{a},{b}", "--batch-sizes", "1",
        f"--benchmark-storage=file://{storage}", "--benchmark-autosave",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout and "deselected" in result.stdout
    (run,), _ = saved_files(storage)
    modes = set()
    for bench in run["benchmarks"]:
        paired = bench["extra_info"]["paired"]
        low, high = paired["interval"]
        assert low <= paired["ratio"] <= high
        assert (paired["baseline"]["variant"], paired["candidate"]["variant"]) == (a, b)
        assert len(paired["baseline_s"]) == len(paired["candidate_s"]) == paired["rounds"]
        per_round = np.array(paired["candidate_s"]) / np.array(paired["baseline_s"])
        assert paired["round_ratio"]["median"] == pytest.approx(np.median(per_round))
        modes.add(bench["extra_info"]["mode"])
    assert modes == {"paired-model", "paired-e2e"}
    record = run["machine_info"]["canary"]
    assert record["version"] == canary.VERSION and record["rounds"] >= canary.START_ROUNDS
    assert set(record["after"]) == {b["fullname"] for b in run["benchmarks"]}


def test_canary_stops_at_its_cap():
    probe = canary.Canary(max_rounds=4)
    probe.sample(3, after="t1")
    probe.sample(3, after="t2")
    record = probe.record()
    assert record["rounds"] == 4 and [len(v) for v in record["after"].values()] == [3, 1]


def test_alternator_sizes_nothing_without_warm_up():
    assert Alternator(lambda: None, lambda: None).warm_up(0) == 0.0


def test_baseline_release_collects_a_pair_per_shared_variant_and_rejects_a_non_release(
    tiny_release, tmp_path
):
    result = run_bench("--release", tiny_release, "--baseline-release", tiny_release,
                       "--batch-sizes", "1", "--collect-only")  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    ids = re.findall(r"::test_paired\[(.+)\]$", result.stdout, flags=re.MULTILINE)
    variants = [v.id for v in load_manifest(tiny_release).variants]
    assert ids == [
        f"{v}-b1-cpu-{m}-vs-baseline-release" for v in variants for m in ("model", "e2e")
    ]
    assert "test_latency[" not in result.stdout
    bad = run_bench("--release", tiny_release, "--baseline-release", tmp_path, "--collect-only")
    errors = [line for line in bad.stderr.splitlines() if line.startswith("ERROR")]
    assert bad.returncode != 0 and len(errors) == 1, bad.stderr
    assert errors[0].startswith(f"ERROR: --baseline-release: {tmp_path}"), errors
