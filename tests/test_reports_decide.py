"""reports: the recommendation, the headline ratios with intervals, the ranking, noise, the gate
table, the tune sweep and the CLI's Ctrl-C.

Saved runs are synthetic (``reports.synthetic``) with seeded timings; expected values are
recomputed here from those timings with numpy.
"""

from __future__ import annotations

import io
import json
import math
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pandas as pd
import pytest

from mge_harness.reports import synthetic as syn
from mge_harness.reports.build import write_report
from mge_harness.reports.cli import main
from mge_harness.reports.decide import HEADLINES, ranking, recommendations
from mge_harness.reports.intervals import ratio
from mge_harness.reports.noise import NOTCH, cause
from mge_harness.reports.sources import load_runs
from mge_harness.reports.table import build_table, current_view

EXTERNAL = "resnet18.external.cbn-on"
FUSED = "resnet18.fused.cbn-on"
FUSED_OFF = "resnet18.fused.cbn-off"
WARP = "resnet18.identity-warp.cbn-on"

#: Median seconds per call at batch 1, per (variant, device): the identity warp is fastest but
#: an expected failure, fused cbn-off next but it fails the gate, so fused cbn-on on cpu-2t wins.
SPEEDS = {
    (WARP, "cpu"): 0.010,
    (FUSED_OFF, "cpu"): 0.012,
    (FUSED, "cpu-2t"): 0.020,
    (FUSED, "cpu"): 0.026,
    (EXTERNAL, "cpu-2t"): 0.024,
    (EXTERNAL, "cpu"): 0.030,
}
GATE = {EXTERNAL: "pass", FUSED: "pass", FUSED_OFF: "fail", WARP: "xfail"}


@pytest.fixture(scope="module")
def decided(tmp_path_factory):
    root = tmp_path_factory.mktemp("decide")
    samples, entries = {}, []
    for seed, ((variant, device), median) in enumerate(SPEEDS.items()):
        for batch in (1, 4):
            data = syn.timings(median * batch, 0.02, 40, seed=100 * batch + seed)
            samples[variant, device, batch] = np.asarray(data)
            entries.append(syn.benchmark(variant, data, batch=batch, device=device, mode="e2e"))
    syn.save(root / "runs", syn.saved_run(entries, load_per_cpu=0.4), 1)
    gate = syn.gate(GATE)
    gate_path = root / "gate.json"
    gate_path.write_text(json.dumps(gate))
    written = write_report([root / "runs"], gate=gate_path, out=root / "out")
    return root, samples, written


def test_the_recommendation_is_the_fastest_variant_that_passed_the_gate(decided):
    root, samples, written = decided
    view = current_view(written.table)
    choices = recommendations(view)

    passed = {k: v for k, v in samples.items() if GATE[k[0]] == "pass"}
    for choice in choices:
        mine = {k: v for k, v in passed.items() if k[2] == choice.setting.batch}
        expected = min(mine, key=lambda k: np.median(mine[k]))
        assert (choice.row["variant"], choice.row["device"]) == expected[:2]
        external = samples[EXTERNAL, expected[1], choice.setting.batch]
        fused = samples[expected]
        speed = choice.versus_external
        assert speed.value == pytest.approx(np.median(external) / np.median(fused), rel=1e-12)
        assert speed.low < speed.value < speed.high
    assert [c.setting.label for c in choices] == ["batch 1", "batch 4"]

    report = (root / "out" / "report.md").read_text()
    first = report.split("\n\n")[2]  # after the title and the "Recommendation" heading
    assert first.startswith("- **batch 1**: ship `resnet18.fused.cbn-on` on `cpu-2t`: ")
    assert f"{choices[0].versus_external} the speed of external" in first
    ship_lines = [line for line in report.splitlines() if ": ship `" in line]
    assert len(ship_lines) == 2 and not any(
        WARP in line or FUSED_OFF in line for line in ship_lines
    )
    assert f"`{WARP}`" in report.split("## Summary")[0]  # named as never recommended


def test_frames_of_different_sizes_are_decided_apart(tmp_path):
    entries = []
    for seed, (variant, size, median) in enumerate(
        ((FUSED, [480, 640], 0.010), (EXTERNAL, [480, 640], 0.012),
         (FUSED, [1080, 1920], 0.040), (EXTERNAL, [1080, 1920], 0.030))
    ):  # fmt: skip
        data = syn.timings(median, 0.02, 30, seed=seed)
        entries.append(syn.benchmark(variant, data, mode="e2e", image_size=size))
    syn.save(tmp_path, syn.saved_run(entries), 1)
    view = current_view(build_table(load_runs([tmp_path]).runs, syn.gate(GATE)))

    choices = {c.setting.label: c.row["variant"] for c in recommendations(view)}
    assert choices == {"batch 1, 1080x1920": EXTERNAL, "batch 1, 480x640": FUSED}
    figures = {s.label: r for s, r in HEADLINES[0].per_batch(view)}
    assert set(figures) == set(choices) and all(r.pairs == 1 for r in figures.values())
    assert figures["batch 1, 480x640"].value > 1 > figures["batch 1, 1080x1920"].value


def test_without_a_gate_nothing_is_recommended(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no results/gate.json of another run (the gate tests write one)
    data = syn.timings(0.02, 0.02, 10, seed=1)
    syn.save(tmp_path / "runs", syn.saved_run([syn.benchmark(FUSED, data, mode="e2e")]), 1)
    write_report([tmp_path / "runs"], gate=None, out=tmp_path / "out")
    report = (tmp_path / "out" / "report.md").read_text()
    assert report.split("\n\n")[2].startswith("- Nothing to ship: no gate result")
    assert ": ship `" not in report


def test_a_recommendation_from_a_busy_run_says_so(tmp_path):
    data = syn.timings(0.02, 0.02, 30, seed=1)
    run = syn.saved_run([syn.benchmark(FUSED, data, mode="e2e")], load_per_cpu=4.5)
    syn.save(tmp_path / "runs", run, 1)
    (tmp_path / "gate.json").write_text(json.dumps(syn.gate({FUSED: "pass"})))
    write_report([tmp_path / "runs"], gate=tmp_path / "gate.json", out=tmp_path / "out")
    first = (tmp_path / "out" / "report.md").read_text().split("\n\n")[2]
    assert first.startswith(f"- **batch 1**: ship `{FUSED}` on `cpu`: ")
    assert "(noisy, machine busy: load 4.5 per CPU: measure again before shipping)" in first


def test_a_partial_gate_recommends_nothing(decided, tmp_path):
    root, _, _ = decided
    gate = {**syn.gate(GATE), "status": "partial", "not_run": ["eager"]}
    (tmp_path / "gate.json").write_text(json.dumps(gate))
    write_report([root / "runs"], gate=tmp_path / "gate.json", out=tmp_path / "out")
    report = (tmp_path / "out" / "report.md").read_text()
    assert report.split("\n\n")[2].startswith("- Nothing to ship: the gate result is partial")
    assert ": ship `" not in report


def test_ranking_times_each_row_against_the_fastest_that_passed(decided):
    _, samples, written = decided
    ranked = ranking(current_view(written.table))
    for batch, rows in ranked.groupby("batch"):
        fastest = min(
            np.median(v) for k, v in samples.items() if k[2] == batch and GATE[k[0]] == "pass"
        )
        for _, row in rows.iterrows():
            median = np.median(samples[row["variant"], row["device"], batch])
            assert row["x_fastest"] == pytest.approx(median / fastest, rel=1e-12)
        eligible = rows[rows["rank"].notna()]
        assert list(eligible["rank"]) == list(range(1, len(eligible) + 1))
        assert set(rows.loc[rows["rank"].isna(), "variant"]) == {WARP, FUSED_OFF}
        assert list(rows["per_image_ms"]) == sorted(rows["per_image_ms"])


def test_headline_ratios_are_one_figure_per_batch_over_every_pair(decided):
    _, samples, written = decided
    view = current_view(written.table)
    fused_vs_external = {s.batch: r for s, r in HEADLINES[0].per_batch(view)}
    for batch, figure in fused_vs_external.items():
        logs = [
            np.log(np.median(samples[EXTERNAL, device, batch]))
            - np.log(np.median(samples[FUSED, device, batch]))
            for device in ("cpu", "cpu-2t")
        ]
        assert figure.pairs == 2
        assert figure.value == pytest.approx(math.exp(np.mean(logs)), rel=1e-12)
        assert figure.low < figure.value < figure.high


def _bootstrap(top, bottom, rng, resamples=4000):
    """A plain numpy percentile bootstrap of median(top) / median(bottom)."""
    a = rng.choice(top, (resamples, top.size))
    b = rng.choice(bottom, (resamples, bottom.size))
    return np.percentile(np.median(a, axis=1) / np.median(b, axis=1), [2.5, 97.5])


def test_ratio_interval_matches_a_plain_bootstrap_and_sees_a_15_percent_change():
    rng = np.random.default_rng(7)
    base = np.asarray(syn.timings(0.030, 0.05, 60, seed=3))
    slower = np.asarray(syn.timings(0.030 * 1.15, 0.05, 60, seed=4))
    same = np.asarray(syn.timings(0.030, 0.05, 60, seed=5))

    changed = ratio([(slower, base)])
    low, high = _bootstrap(slower, base, rng)
    assert changed.low == pytest.approx(low, rel=0.02)
    assert changed.high == pytest.approx(high, rel=0.02)
    assert changed.low > 1 and changed.clear
    unchanged = ratio([(same, base)])
    assert unchanged.low < 1 < unchanged.high and not unchanged.clear
    # Saved without raw timings: the medians still give the figure, with no interval.
    summary = ratio([(None, base)], medians=[(0.033, 0.030)])
    assert summary.value == pytest.approx(1.1) and not summary.has_interval
    assert str(summary) == "1.10x"


def test_noise_is_the_median_uncertainty_and_a_busy_run_is_noisy_whole(tmp_path):
    tight = syn.timings(0.03, 0.01, 200, seed=1)
    wide = syn.timings(0.03, 0.60, 20, seed=2)
    quiet = syn.saved_run(
        [syn.benchmark(FUSED, tight), syn.benchmark(EXTERNAL, wide)], load_per_cpu=0.5
    )
    busy = syn.saved_run(
        [syn.benchmark(FUSED, tight, device="cpu-2t")], load_per_cpu=3.2, steal=0.04,
        when="2026-01-02T00:00:00+00:00",
    )  # fmt: skip
    syn.save(tmp_path, quiet, 1)
    syn.save(tmp_path, busy, 2)
    table = build_table(load_runs([tmp_path]).runs, noise=0.05).set_index(["variant", "device"])

    for key, data in (((FUSED, "cpu"), tight), ((EXTERNAL, "cpu"), wide)):
        q1, median, q3 = np.percentile(data, [25, 50, 75])
        expected = NOTCH * (q3 - q1) / np.sqrt(len(data)) / median
        assert table.loc[key, "uncertainty"] == pytest.approx(expected, rel=1e-12)
    assert (
        table.loc[(FUSED, "cpu"), "uncertainty"]
        < 0.05
        < table.loc[(EXTERNAL, "cpu"), "uncertainty"]
    )
    assert not table.loc[(FUSED, "cpu"), "noisy"] and table.loc[(EXTERNAL, "cpu"), "noisy"]
    # The same tight timings saved on a busy machine are noisy, and the cause says why.
    busy_row = table.loc[(FUSED, "cpu-2t")]
    assert busy_row["noisy"]
    assert cause(busy_row) == "machine busy: load 3.2 per CPU; CPU steal 4%"
    tail = np.percentile(wide, 99) / np.median(wide)
    assert (
        cause(table.loc[(EXTERNAL, "cpu")])
        == f"stalls inside the run: p99 is {tail:.1f}x the median"
    )


def test_gate_table_has_one_row_per_variant_and_the_checks_collapsed(decided):
    root, _, _ = decided
    report = (root / "out" / "report.md").read_text()
    gate = report.split("## Equivalence gate")[1].split("\n## ")[0]
    summary, detail = gate.split("<details>")
    rows = [line for line in summary.splitlines() if line.startswith("| resnet18.")]
    assert sorted(line.split(" | ")[0][2:] for line in rows) == sorted(GATE)
    assert detail.count("| tolerance |") == len(GATE)
    html = (root / "out" / "report.html").read_text()
    assert html.count("<details>") == 1 and "<summary>Every check: 4 row(s)" in html
    gate_html = html.split("<h2>Equivalence gate</h2>")[1]
    warp = gate_html.split(f"<td>{WARP}</td>")[0].rsplit("<tr", 1)[1]
    assert "muted" in warp  # the expected failure is greyed out in the gate table


SWEEP = {
    FUSED: [
        syn.sweep_row(FUSED, 1, "cpu-nchw88", speedup=3.1, interval=[2.9, 3.3]),
        syn.sweep_row(FUSED, 1, "cpu-2t", speedup=1.4, interval=[1.2, 1.6], cpu_per_wall=1.9),
        syn.sweep_row(FUSED, 1, "cpu-planted", "not equivalent", speedup=None),
        syn.sweep_row(FUSED, 1, "cpu-nchw44", "crashed"),
    ]
}


def test_the_tune_sweep_is_found_in_the_gates_release_folder(tmp_path):
    release = tmp_path / "release"
    release.mkdir()
    tuned = syn.tuned(SWEEP, {FUSED: "cpu-nchw88"})
    cpu = {"brand_raw": "AMD EPYC 7B13", "arch": "X86_64", "count": 2, "simd_flags": ["avx2"]}
    tuned["machine_info"] = {**tuned.get("machine_info", {}), "cpu": cpu}
    (release / "tuned.json").write_text(json.dumps(tuned))
    gate = syn.gate({FUSED: "pass"}, release=str(release))
    (tmp_path / "gate.json").write_text(json.dumps(gate))
    data = syn.timings(0.02, 0.02, 10, seed=1)
    syn.save(tmp_path / "runs", syn.saved_run([syn.benchmark(FUSED, data, mode="e2e")]), 1)

    written = write_report([tmp_path / "runs"], gate=tmp_path / "gate.json", out=tmp_path / "out")

    report = (tmp_path / "out" / "report.md").read_text()
    sweep = report.split("## Configuration sweep")[1].split("\n## ")[0]
    assert f"from {release / 'tuned.json'}, measured on AMD EPYC 7B13 (avx2)" in sweep
    assert f"- `{FUSED}`: `cpu-nchw88` (batch 1 3.10x [2.90, 3.30])" in sweep
    rows = [line for line in sweep.splitlines() if line.startswith(f"| {FUSED} |")]
    assert len(rows) == len(SWEEP[FUSED])
    assert "| cpu-nchw88 | ok | yes | 3.10x | 2.90x | 3.30x |" in sweep
    assert "| cpu-planted | not equivalent |  |" in sweep and "| cpu-nchw44 | crashed |  |" in sweep
    assert any(p.name == "tune_sweep.png" for p in written.files)


def test_a_broken_tuned_json_in_the_release_folder_is_skipped_with_a_warning(tmp_path):
    (tmp_path / "release").mkdir()
    (tmp_path / "release" / "tuned.json").write_text('{"format_version": 1, "vari')
    gate = syn.gate({FUSED: "pass"}, release=str(tmp_path / "release"))
    (tmp_path / "gate.json").write_text(json.dumps(gate))
    data = syn.timings(0.02, 0.02, 10, seed=1)
    syn.save(tmp_path / "runs", syn.saved_run([syn.benchmark(FUSED, data)]), 1)

    written = write_report([tmp_path / "runs"], gate=tmp_path / "gate.json", out=tmp_path / "out")

    [warning] = written.warnings
    assert warning.startswith(f"skipped {tmp_path / 'release' / 'tuned.json'}: not valid JSON")
    assert "## Configuration sweep" not in (tmp_path / "out" / "report.md").read_text()


def test_an_explicit_tuned_file_must_be_a_sweep(tmp_path):
    data = syn.timings(0.02, 0.02, 10, seed=1)
    syn.save(tmp_path / "runs", syn.saved_run([syn.benchmark(FUSED, data)]), 1)
    (tmp_path / "tuned.json").write_text('{"variants": {}}')
    done = _main("--benchmarks", str(tmp_path / "runs"), "--out", str(tmp_path / "out"),
                 "--tuned", str(tmp_path / "tuned.json"))  # fmt: skip
    assert done[0] == 2 and done[2].count("\n") == 1
    assert done[2].startswith(f"error: {tmp_path / 'tuned.json'}: not a tuned.json")


def _main(*args):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("value", ["0", "1.5", "lots"])
def test_a_bad_noise_threshold_is_a_one_line_error(value):
    code, _, err = _main("--noise", value)
    assert code == 2 and err.count("\n") == 1
    assert f"'{value}' is not a fraction between 0 and 1" in err


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, tmp_path):
    from mge_harness.reports import build

    def interrupted(**_):
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "write_report", interrupted)
    code, _, err = _main("--benchmarks", str(tmp_path))
    assert (code, err) == (130, "error: interrupted\n")


def test_plots_are_titled_with_device_runs_and_dates(decided):
    _, _, written = decided
    names = {p.name for p in written.files}
    assert {"throughput_cpu.png", "throughput_cpu-2t.png"} <= names
    html = written.files[[p.name for p in written.files].index("report.html")].read_text()
    run = current_view(written.table)["run"].iloc[0]
    assert f"alt='images/s on cpu-2t: run {run} (2026-01-01)'" in html


def test_synthetic_runs_read_like_the_bench_plugins(decided):
    _, _, written = decided
    row = pd.Series(written.table.iloc[0])
    assert (row["cpu"], row["threads"], row["megengine_version"]) == (
        "Intel(R) Xeon(R) Processor", "2 of 2 CPUs", "1.13.0",
    )  # fmt: skip
    assert row["load_per_cpu"] == 0.4 and row["steal"] == 0.0


def test_throughput_plots_have_error_bars_from_zero_and_a_marker_per_run(tmp_path):
    from mge_harness.reports.plots import MARKERS, device_plot

    for number, median in ((1, 0.030), (2, 0.020)):
        entries = [
            syn.benchmark(
                variant,
                syn.timings(median * batch, 0.05, 20, seed=number * 10 + batch),
                batch=batch,
                mode="e2e",
            )  # fmt: skip
            for variant, batch in ((FUSED, 1), (WARP, 1), (FUSED, 4))
            if (number, batch) != (2, 4)  # batch 4 only in run 1: the view mixes two runs
        ]
        syn.save(tmp_path, syn.saved_run(entries, when=f"2026-01-0{number}T00:00:00"), number)
    gate = syn.gate({FUSED: "pass", WARP: "xfail"})
    view = current_view(build_table(load_runs([tmp_path]).runs, gate))
    figure = device_plot(view, "images_per_s", 1.0, "images/s", "title")
    (ax,) = figure.axes

    assert ax.get_ylim()[0] == 0
    labels = ax.get_legend().get_texts()
    assert [t.get_text() for t in labels] == [
        FUSED,
        f"{WARP} (expected failure)",
        *(f"run {r}" for r in sorted(set(view["run"]))),
    ]
    fused = view[view["variant"] == FUSED].sort_values("batch")
    points = [line for line in ax.lines if line.get_linestyle() == "None"]
    markers = {line.get_marker() for line in points} - {"_"}  # "_": the error bars' caps
    assert markers == set(MARKERS[:2])  # two runs in the view, two marker styles
    # Error bars span batch / q3 to batch / q1 of each point.
    bars = [c for c in ax.collections if len(c.get_segments()) == len(fused)]
    low_high = sorted(tuple(sorted(seg[:, 1])) for seg in bars[0].get_segments())
    expected = sorted(zip(fused["batch"] / fused["q3"], fused["batch"] / fused["q1"], strict=True))
    assert np.allclose(low_high, expected)
