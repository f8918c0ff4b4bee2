"""``bench.tune`` on the tiny model, and ``exporters.tuned`` reading its file back.

One real sweep (module fixture) of one variant at batch 1 with three candidates: ``cpu-nchw88``
(a real config), a planted config whose runner is nchw88 plus noise of 1e-4 of the logits' size
(fast, but not equivalent), and a planted config whose probe child calls ``os.abort``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mge_harness.bench import tune
from mge_harness.bench.cases import build_cases
from mge_harness.bench.grid import quick_grid
from mge_harness.exporters.devices import DeviceConfig, get_device_config
from mge_harness.exporters.errors import HarnessError
from mge_harness.exporters.files import atomic_write_json
from mge_harness.exporters.manifest import load_manifest
from mge_harness.exporters.probe import ProbeResult, run_probe
from mge_harness.exporters.runners import Runner
from mge_harness.exporters.tuned import lite_config, load_tuned, recommended_config

ROOT = Path(__file__).resolve().parent.parent
VARIANT = "tiny.external.cbn-on"
NOISY = DeviceConfig("planted-noisy", description="nchw88 plus noise on the outputs")
ABORTS = DeviceConfig("planted-abort", description="its probe child calls os.abort")


class NoisyRunner(Runner):
    """An image runner whose outputs move by ``scale`` of their largest magnitude."""

    def __init__(self, inner, scale: float):
        super().__init__()
        self.inner, self.scale, self.name = inner, scale, f"noisy+{inner.name}"
        self.model = getattr(inner, "model", inner)  # what the sweep times
        self.rng = np.random.default_rng(1)

    def _activate(self):
        self.inner.activate()

    def _deactivate(self):
        self.inner.deactivate()

    def infer(self, feed):
        outputs = self.inner.infer(feed)
        return {
            name: (
                out + self.scale * np.abs(out).max() * self.rng.standard_normal(out.shape)
            ).astype(out.dtype)
            for name, out in outputs.items()
        }


def planted_runner(entry, manifest, config):
    if config.name == NOISY.name:
        inner = tune.default_runner(entry, manifest, get_device_config("cpu-nchw88"))
        return NoisyRunner(inner, scale=1e-4)
    return tune.default_runner(entry, manifest, config)


def planted_probe(release_dir, variant_ids, config, batches, timeout):
    if config.name == ABORTS.name:
        command = [sys.executable, "-c", "import os; os.abort()"]
        return {vid: run_probe(command, timeout) for vid in variant_ids}
    if config.name == NOISY.name:
        return {vid: ProbeResult("ok") for vid in variant_ids}
    return tune.default_probe(release_dir, variant_ids, config, batches, timeout)


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    from mge_harness.exporters.release import builtin_release

    folder = tmp_path_factory.mktemp("tune") / "tiny"
    shutil.copytree(builtin_release("tiny", progress=None), folder)
    return folder


@pytest.fixture(scope="module")
def swept(release):
    configs = ["cpu-nchw88", ABORTS, NOISY]
    path, rows = tune.tune(
        release, [VARIANT], (1,), configs, rounds=15, probe_timeout=60, log=lambda line: None,
        make_runner=planted_runner, probe=planted_probe,
    )  # fmt: skip
    return path, {row.config: row for row in rows}


def test_sweep_times_an_equivalent_config_and_records_it(swept):
    path, rows = swept
    row = rows["cpu-nchw88"]
    assert row.verdict == "ok" and row.rounds == 15
    assert row.interval[0] <= row.speedup <= row.interval[1] and row.speedup > 0
    assert row.cpu_per_wall > 0 and row.baseline_ms > 0 and row.candidate_ms > 0
    # nchw88 reorders float sums: close to the default, not bitwise, and within the tolerance
    assert 0 < row.equivalence["max_abs"] <= row.equivalence["tolerance"]["atol"]
    document = json.loads(path.read_text())
    assert path.name == "tuned.json" and document["model"] == "tiny"
    cpu = document["machine_info"]["cpu"]  # which CPU the configuration was fastest on
    assert cpu["brand_raw"] and cpu["count"] >= 1 and isinstance(cpu["simd_flags"], list)
    sweep = document["variants"][VARIANT]["sweep"]
    assert {r["config"]: r["verdict"] for r in sweep} == {
        "cpu-nchw88": "ok",
        "planted-abort": "crashed",
        "planted-noisy": "not equivalent",
    }
    recommended = document["variants"][VARIANT]["recommended"]
    assert recommended["config"] == ("cpu-nchw88" if row.significant else "cpu")


def test_a_config_that_changes_results_is_not_equivalent_and_never_recommended(swept):
    path, rows = swept
    row = rows[NOISY.name]
    assert row.verdict == "not equivalent" and not row.significant
    assert row.equivalence["status"] == "mismatch" and row.rounds == 0  # never timed
    assert "planted-noisy" not in {
        tune.recommend(list(rows.values()), (1,)),
        load_tuned(path)["variants"][VARIANT]["recommended"]["config"],
    }


def test_a_crashing_config_is_reported_and_the_sweep_goes_on(swept):
    _, rows = swept
    row = rows[ABORTS.name]
    assert row.verdict == "crashed" and "SIGABRT" in row.reason
    assert rows[NOISY.name].verdict != "crashed"  # swept after it


def test_a_baseline_that_crashes_leaves_the_variant_without_a_recommendation(release, tmp_path):
    def baseline_aborts(release_dir, variant_ids, config, batches, timeout):
        if config.name == tune.BASELINE:
            return planted_probe(release_dir, variant_ids, ABORTS, batches, timeout)
        return {vid: ProbeResult("ok") for vid in variant_ids}

    copy = shutil.copytree(release, tmp_path / "tiny")  # the module's tuned.json stays
    path, rows = tune.tune(
        copy, [VARIANT], (1,), ["cpu-nchw88"], rounds=3, log=lambda line: None,
        probe=baseline_aborts,
    )  # fmt: skip
    assert [(r.config, r.verdict) for r in rows] == [(tune.BASELINE, "crashed")]
    assert load_tuned(path)["variants"][VARIANT]["recommended"] is None
    with pytest.raises(HarnessError, match="no valid 'recommended' record"):
        lite_config(path, VARIANT)


def _row(config, batch, speedup, low, verdict="ok"):
    return tune.Row(VARIANT, batch, config, verdict, speedup=speedup, interval=(low, speedup))


def test_recommend_takes_the_best_worst_batch_among_significant_configs():
    rows = [
        _row("fast-b1", 1, 3.0, 2.5),
        _row("fast-b1", 4, 0.9, 0.8),  # slower at batch 4: out
        _row("steady", 1, 1.5, 1.2),
        _row("steady", 4, 1.6, 1.3),
        _row("wrong", 1, 9.0, 8.0, "not equivalent"),
        _row("wrong", 4, 9.0, 8.0, "not equivalent"),
        _row("unsure", 1, 2.0, 0.99),
        _row("unsure", 4, 2.0, 1.5),
    ]
    assert tune.recommend(rows, (1, 4)) == "steady"
    assert tune.recommend(rows[:2], (1, 4)) == tune.BASELINE


def test_bootstrap_interval_brackets_the_median():
    values = np.random.default_rng(0).normal(2.0, 0.1, 200)
    median, low, high = tune.bootstrap_median(values)
    assert low < median < high and high - low < 0.1 and abs(median - 2.0) < 0.05


def test_lite_config_round_trips_tuned_json(tmp_path, release):
    import megenginelite as lite

    path = tmp_path / "tuned.json"
    recommended = {"config": "cpu-nchw88-2t", "options": {"enable_nchw88": 1}, "threads": 2}
    atomic_write_json(
        path, {"format_version": 1, "variants": {VARIANT: {"recommended": recommended}}}
    )
    config, threads = lite_config(path, VARIANT)
    assert isinstance(config, lite.LiteConfig) and threads == 2
    assert config.options.enable_nchw88 and not config.options.weight_preprocess
    assert recommended_config(path, VARIANT) == "cpu-nchw88-2t"
    network = lite.LiteNetwork(config=config)  # the config really loads and runs the variant
    network.threads_number = threads
    network.load(str(release / f"{VARIANT}.mge"))
    network.get_io_tensor("data").set_data_by_copy(np.zeros((1, 3, 32, 32), np.float32))
    network.forward()
    network.wait()


def test_lite_config_reads_the_sweeps_own_file(swept):
    path, _ = swept
    config, threads = lite_config(path, VARIANT)
    chosen = load_tuned(path)["variants"][VARIANT]["recommended"]
    assert threads == chosen["threads"] == 1
    assert bool(config.options.enable_nchw88) == ("enable_nchw88" in chosen["options"])


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        ("{not json", "not valid JSON"),
        ('{"format_version": 1}', "not a tuned.json"),
        ('{"format_version": 1, "variants": {"x": {}}}', "no variant 'tiny.external.cbn-on'"),
        (
            '{"format_version": 1, "variants": {"tiny.external.cbn-on": {"recommended": {}}}}',
            "no valid 'recommended' record",
        ),
    ],
    ids=["missing", "bad-json", "not-tuned", "unknown-variant", "no-recommendation"],
)
def test_lite_config_errors_are_one_line(tmp_path, content, expected):
    path = tmp_path / "tuned.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(HarnessError) as err:
        lite_config(path, VARIANT)
    message = str(err.value)
    assert expected in message and str(path) in message and "\n" not in message


def run_tune(*args):
    return subprocess.run(
        [sys.executable, "-m", "bench.tune", *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--configs", "cpu-nchw88,gpu9"), "--configs: unknown 'gpu9'"),
        (("--variants", "tiny.nope"), "--variants: unknown 'tiny.nope'"),
        (("--batches", "1,0"), "--batches: expected positive integers"),
        (("--rounds", "1"), "--rounds: expected at least 3"),
    ],
    ids=["config", "variant", "batches", "rounds"],
)
def test_cli_errors_are_one_line_exit_2(release, args, expected):
    result = run_tune("--release", release, *args)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and expected in lines[0], result.stderr


def test_cli_missing_release_is_one_line(tmp_path):
    result = run_tune("--release", tmp_path / "nothing")
    assert result.returncode == 2 and result.stderr.strip().startswith("error:")
    assert len(result.stderr.strip().splitlines()) == 1


def test_tuned_cases_run_each_variant_on_its_recommended_config(release):
    variants = load_manifest(release).variants
    tuned = {VARIANT: "cpu-nchw88"}
    cases = build_cases(variants, quick_grid(), tuned)
    extra = [case for case in cases if case.label]
    assert {case.variant.id for case in extra} == {VARIANT}
    assert {case.device for case in extra} == {"cpu-nchw88"}
    assert {case.id for case in extra} == {
        f"{VARIANT}-b{b}-tuned-{m}" for b in (1, 4) for m in ("model", "e2e")
    }
    assert extra[0].group == "b1/tuned/model"
    assert cases[: len(cases) - len(extra)] == build_cases(variants, quick_grid())


def test_bench_plugin_collects_tuned_cases_and_refuses_a_bad_file(release, tmp_path):
    from tests.test_bench_session import collected_ids, run_bench

    path = tmp_path / "tuned.json"
    recommended = {"config": "cpu-nchw88", "options": {"enable_nchw88": 1}, "threads": 1}
    atomic_write_json(
        path, {"format_version": 1, "variants": {VARIANT: {"recommended": recommended}}}
    )
    result = run_bench("--release", release, "--collect-only", "--tuned", path)
    assert result.returncode == 0, result.stderr
    assert [i for i in collected_ids(result) if "-tuned-" in i] == [
        f"{VARIANT}-b{b}-tuned-{m}" for b in (1, 4) for m in ("model", "e2e")
    ]
    path.write_text("{")
    result = run_bench("--release", release, "--collect-only", "--tuned", path)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and "--tuned:" in errors[0] and "not valid JSON" in errors[0]
