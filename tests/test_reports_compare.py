"""reports --compare: regression rules, the Mann-Whitney significance test and exit statuses."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mge_harness.reports import synthetic as syn
from mge_harness.reports.compare import compare_runs
from mge_harness.reports.errors import ReportError
from mge_harness.reports.rules import RegressionRule
from mge_harness.reports.sources import find_run, read_run
from tests.test_reports import assert_one_line_error, call_main, run_cli

SLOWER = "resnet18.external.cbn-off"  # 30 % slower in the candidate, tight timings
SLIGHTLY = "resnet18.external.cbn-on"  # 2 % slower, tight timings
NOISY = "resnet18.fused.cbn-off"  # 15 % slower median, but very spread and few rounds


def make_runs(storage, save_data=True):
    """Base run 0001 and candidate run 0002 holding the three cases above."""
    tight = [syn.timings(0.030, 0.02, 40, seed) for seed in (1, 2)]
    noisy = syn.timings(0.030, 0.60, 6, seed=3)
    base = [
        syn.benchmark(SLOWER, tight[0], save_data=save_data),
        syn.benchmark(SLIGHTLY, tight[1], save_data=save_data),
        syn.benchmark(NOISY, noisy, save_data=save_data),
    ]
    candidate = [
        syn.benchmark(SLOWER, syn.timings(0.039, 0.02, 40, 4), save_data=save_data),
        syn.benchmark(SLIGHTLY, syn.timings(0.0306, 0.02, 40, 5), save_data=save_data),
        syn.benchmark(NOISY, [t * 1.15 for t in noisy], save_data=save_data),
    ]
    syn.save(storage, syn.saved_run(base, when="2026-01-01T00:00:00+00:00"), 1)
    syn.save(storage, syn.saved_run(candidate, when="2026-01-02T00:00:00+00:00"), 2)


def compared(storage, rules=("median:10%",), alpha=0.05):
    base, candidate = (read_run(find_run(ref, [storage])) for ref in ("0001", "0002"))
    parsed = [RegressionRule.parse(rule) for rule in rules]
    result = compare_runs(base, candidate, parsed, alpha=alpha)
    return result, result.table.set_index("benchmark")


def row(table, variant):
    return table.loc[f"{variant} [cpu model b=1]"]


@pytest.mark.parametrize(
    ("text", "field", "threshold", "relative"),
    [("median:10%", "median", 10.0, True), ("mean:2.5%", "mean", 2.5, True),
     ("min:0.002", "min", 0.002, False), ("p99:1e-3", "p99", 1e-3, False)],
)  # fmt: skip
def test_rules_parse(text, field, threshold, relative):
    rule = RegressionRule.parse(text)
    assert (rule.field, rule.threshold, rule.relative) == (field, threshold, relative)
    assert RegressionRule.parse(str(rule)) == rule


@pytest.mark.parametrize("text", ["median", "median:", "median:ten%", "speed:10%", "median:-5%"])
def test_bad_rules_name_the_accepted_forms(text):
    with pytest.raises(ReportError, match="expected FIELD:N% or FIELD:SECONDS"):
        RegressionRule.parse(text)


def test_rule_change_is_relative_or_absolute():
    assert RegressionRule.parse("median:10%").change(0.020, 0.023) == pytest.approx(15.0)
    assert RegressionRule.parse("min:0.002").change(0.020, 0.023) == pytest.approx(0.003)
    assert not RegressionRule.parse("median:10%").exceeded(0.020, math.nan)


def test_only_a_large_and_significant_regression_fails(tmp_path):
    make_runs(tmp_path)
    result, table = compared(tmp_path)

    slower, slightly, noisy = (row(table, v) for v in (SLOWER, SLIGHTLY, NOISY))
    assert slower["ratio"] > 1.25 and slower["p_value"] < 1e-6 and slower["verdict"] == "slower"
    assert slightly["ratio"] < 1.10 and not slightly["failed"]
    assert noisy["ratio"] == pytest.approx(1.15)
    assert noisy["p_value"] > 0.05 and noisy["verdict"] == "within noise" and not noisy["failed"]
    assert not result
    assert len(result.failures) == 1 and result.failures[0].startswith(f"{SLOWER} [")
    assert "median +" in result.failures[0]


def test_ratio_is_the_median_ratio_of_the_raw_timings(tmp_path):
    make_runs(tmp_path)
    base, candidate = (read_run(find_run(ref, [tmp_path])) for ref in ("0001", "0002"))
    _, table = compared(tmp_path)

    base_data, cand_data = (
        np.asarray(next(b for b in run.benchmarks if b["extra_info"]["variant"] == SLOWER)
                   ["stats"]["data"])
        for run in (base, candidate)
    )  # fmt: skip
    assert row(table, SLOWER)["ratio"] == pytest.approx(np.median(cand_data) / np.median(base_data))


def test_without_raw_timings_rules_fall_back_to_the_threshold(tmp_path):
    make_runs(tmp_path, save_data=False)
    result, table = compared(tmp_path)

    assert np.isnan(table["p_value"]).all()
    assert {row(table, v)["verdict"] for v in (SLOWER, SLIGHTLY)} == {"untested (no raw timings)"}
    failed = {f.split(" [")[0] for f in result.failures}
    assert failed == {SLOWER, NOISY}  # NOISY's 15 % can no longer be told apart from noise
    assert all("threshold only" in f for f in result.failures)


def test_cli_exit_status_follows_the_rules(tmp_path):
    make_runs(tmp_path / ".benchmarks")

    failing = run_cli("--compare", "0001", "0002", "--fail-on", "median:10%", cwd=tmp_path)
    lenient = call_main("--compare", "0001", "0002", "--fail-on", "median:40%", cwd=tmp_path)
    no_rule = call_main("--compare", "0001", "0002", cwd=tmp_path)

    assert failing.returncode == 1, failing.stderr
    regressions = failing.stdout.split("## Regressions")[1]
    assert SLOWER in regressions and NOISY not in regressions and SLIGHTLY not in regressions
    assert lenient.returncode == 0 and "No rule failed." in lenient.stdout
    assert no_rule.returncode == 0
    assert (tmp_path / "results" / "compare.md").read_text() == no_rule.stdout
    assert (tmp_path / "results" / "compare.csv").exists()


def test_compare_accepts_file_paths(tmp_path):
    make_runs(tmp_path)
    files = sorted(str(p) for p in tmp_path.rglob("000*.json"))
    done = call_main("--compare", *files, "--out", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "within noise" in done.stdout


def test_unknown_and_ambiguous_run_ids_are_one_line_errors(tmp_path):
    make_runs(tmp_path / ".benchmarks")
    missing = call_main("--compare", "0001", "0007", cwd=tmp_path)
    assert_one_line_error(missing, "no saved run '0007'", "Linux-CPython-3.10-64bit/0002")

    other = syn.saved_run([syn.benchmark(SLOWER, [0.01, 0.02])])
    syn.save(tmp_path / ".benchmarks", other, 1, machine="Darwin-CPython-3.10-64bit")
    ambiguous = call_main("--compare", "0001", "0002", cwd=tmp_path)
    assert_one_line_error(ambiguous, "'0001' matches 2 saved runs", "MACHINE/0001")
    qualified = ["Linux-CPython-3.10-64bit/0001", "0002"]
    assert call_main("--compare", *qualified, cwd=tmp_path).returncode == 0


@pytest.mark.parametrize("rule", ["median:ten%", "wall:5%"])
def test_bad_fail_on_is_a_one_line_error(tmp_path, rule):
    make_runs(tmp_path / ".benchmarks")
    done = call_main("--compare", "0001", "0002", "--fail-on", rule, cwd=tmp_path)
    assert_one_line_error(done, f"--fail-on {rule!r}")


# --- the machine-speed canary ---------------------------------------------------------------


def with_canary(run: dict, samples: list[float], names=()) -> dict:
    """``run`` with a canary record: ``samples`` in all, the same rounds after each of ``names``."""
    run["machine_info"]["canary"] = {
        "version": 1,
        "median_s": float(np.median(samples)),
        "rounds": len(samples),
        "samples_s": samples,
        "after": {name: samples for name in names},
    }
    return run


def canary_runs(storage, slowdown: float, machine: float, spread: float = 0.01):
    """Base and candidate runs of one benchmark: the candidate's code ``slowdown``x slower, on
    a machine ``machine``x slower (its timings and its canary both scaled), canary rounds
    log-normal with ``spread``."""
    base_t = syn.timings(0.030, 0.02, 40, 1)
    cand_t = [t * slowdown * machine for t in syn.timings(0.030, 0.02, 40, 2)]
    canary = syn.timings(0.004, spread, 30, 3)
    base, cand = syn.benchmark(SLOWER, base_t), syn.benchmark(SLOWER, cand_t)
    fullname = base["fullname"]
    base, cand = syn.saved_run([base]), syn.saved_run([cand], when="2026-01-02T00:00:00+00:00")
    syn.save(storage, with_canary(base, canary, [fullname]), 1)
    syn.save(storage, with_canary(cand, [c * machine for c in canary], [fullname]), 2)


def test_a_slower_machine_is_divided_out_by_the_canary(tmp_path):
    canary_runs(tmp_path, slowdown=1.0, machine=1.4)
    result, table = compared(tmp_path)
    assert row(table, SLOWER)["ratio"] == pytest.approx(1.4, rel=0.03)
    assert row(table, SLOWER)["normalised_ratio"] == pytest.approx(1.0, abs=0.03)
    assert result and "took 1.400x the base run's" in result.drift_text


def test_a_real_slowdown_on_a_steady_machine_still_fails(tmp_path):
    canary_runs(tmp_path, slowdown=1.3, machine=1.1)
    result, table = compared(tmp_path)
    assert row(table, SLOWER)["normalised_ratio"] == pytest.approx(1.3, rel=0.03)
    assert not result and "canary-normalised by 1.100" in result.failures[0]
    assert "cannot resolve" not in result.drift_text


def test_a_slowdown_inside_the_canary_drift_band_does_not_fail(tmp_path):
    canary_runs(tmp_path, slowdown=1.3, machine=1.0, spread=0.5)  # canary varied > 1.3x in-run
    result, table = compared(tmp_path)
    assert result.drift.band > 1.3
    assert row(table, SLOWER)["verdict"] == "within canary drift" and result
    assert "cannot resolve median:10% here" in result.drift_text


def test_without_a_canary_nothing_is_normalised(tmp_path):
    make_runs(tmp_path)
    result, table = compared(tmp_path)
    assert result.drift is None and "unknown" in result.drift_text
    assert (table["canary"] == 1.0).all()


def test_cli_compare_says_how_much_drift_the_canary_saw(tmp_path):
    canary_runs(tmp_path / ".benchmarks", slowdown=1.0, machine=1.2)
    done = call_main("--compare", "0001", "0002", "--fail-on", "median:10%", cwd=tmp_path)
    assert done.returncode == 0, done.stdout
    line = "canary drift: the candidate run's canary took 1.200x"
    assert line in done.stdout and done.stderr == "", done.stderr  # stdout is compare.md
    written = next(tmp_path.rglob("compare.md")).read_text()
    assert line in written and "| canary | normalised |" in written
