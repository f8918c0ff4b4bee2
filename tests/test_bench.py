"""Benchmark harness pieces: grid parsing, cases, probes, inputs, runner cache, provenance."""

from __future__ import annotations

import fnmatch
import signal
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

from mge_harness.bench.cases import RAW_BATCH, RAW_DEVICE, build_cases
from mge_harness.bench.grid import (
    full_grid,
    parse_batch_sizes,
    parse_devices,
    quick_grid,
    select_grid,
)
from mge_harness.bench.inputs import IMAGE_SIZE, image_batch, model_feed
from mge_harness.bench.machine import SIMD_FLAGS, cpu_model_and_flags
from mge_harness.bench.state import sidecar_document, sidecar_name
from mge_harness.exporters.devices import DEVICE_CONFIGS, QUICK_DEVICES
from mge_harness.exporters.errors import HarnessError
from mge_harness.exporters.probe import classify_exit, run_probe

# --- grid ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1,2,4,8", (1, 2, 4, 8)), (" 4, 1 ,4", (4, 1)), ("16", (16,))],
)
def test_batch_sizes_parse_in_order_without_duplicates(text, expected):
    assert parse_batch_sizes(text) == expected


@pytest.mark.parametrize(
    ("text", "offending"),
    [("0", "0"), ("x", "x"), ("", ""), ("1,,2", ""), ("-1", "-1"), ("2.5", "2.5"), ("1,0", "0")],
)
def test_bad_batch_sizes_name_the_offending_item(text, offending):
    with pytest.raises(HarnessError) as err:
        parse_batch_sizes(text)
    message = str(err.value)
    assert message.startswith("--batch-sizes: expected positive integers") and "\n" not in message
    assert f"got {offending!r} in {text!r}" in message


def test_devices_parse_known_configs():
    assert parse_devices("cpu-2t, cpu,cpu-2t") == ("cpu-2t", "cpu")


def test_unknown_device_lists_the_known_configs():
    with pytest.raises(HarnessError) as err:
        parse_devices("cpu,gpu0")
    message = str(err.value)
    assert message.startswith("--devices:") and "'gpu0'" in message
    assert all(name in message for name in DEVICE_CONFIGS)


def test_quick_grid_is_the_default_and_full_takes_every_device_config():
    assert select_grid() == quick_grid()
    assert quick_grid().devices == tuple(QUICK_DEVICES)
    assert select_grid(full_flag=True) == full_grid()
    assert full_grid().devices == tuple(DEVICE_CONFIGS)
    assert set(quick_grid().batch_sizes) < set(full_grid().batch_sizes)


@pytest.mark.parametrize(
    ("flag", "env", "name"),
    [(False, "full", "full"), (False, " Quick ", "quick"), (True, "quick", "full")],
)
def test_grid_switch_flag_or_environment(flag, env, name):
    assert select_grid(full_flag=flag, env_value=env).name == name


def test_bad_grid_environment_value_is_a_usage_error():
    with pytest.raises(
        HarnessError, match="MGE_BENCH_GRID: expected 'quick' or 'full', got 'fast'"
    ):
        select_grid(env_value="fast")


def test_axis_options_override_the_chosen_grid():
    grid = select_grid(full_flag=True, batch_sizes="2", devices="cpu-2t")
    assert (grid.name, grid.batch_sizes, grid.devices) == ("full", (2,), ("cpu-2t",))
    assert grid.min_rounds == full_grid().min_rounds


def test_rounds_fill_the_budget_within_bounds():
    grid = quick_grid()
    assert grid.rounds_for(grid.budget_s / 50) == 50
    assert grid.rounds_for(1e-7) == grid.max_rounds
    assert grid.rounds_for(grid.budget_s * 10) == grid.min_rounds


# --- cases ---------------------------------------------------------------------------------


def _variants(*ids):
    return [SimpleNamespace(id=variant_id) for variant_id in ids]


def test_cases_cover_the_grid_with_raw_baseline_at_batch_one_on_cpu():
    grid = select_grid(batch_sizes="1,4", devices="cpu,cpu-2t")
    cases = build_cases(_variants("m.a", "m.b"), grid)
    ids = [case.id for case in cases]
    assert len(ids) == len(set(ids))
    raw = [case for case in cases if case.mode == "raw"]
    assert {(c.batch, c.device) for c in raw} == {(RAW_BATCH, RAW_DEVICE)}
    assert {c.variant.id for c in raw} == {"m.a", "m.b"}
    # every (variant, batch, device) has both timed modes
    for variant in ("m.a", "m.b"):
        for batch in grid.batch_sizes:
            for device in grid.devices:
                assert {f"{variant}-b{batch}-{device}-{m}" for m in ("model", "e2e")} <= set(ids)
    assert len(cases) == 2 * 2 * 2 * 2 + len(raw)


def test_cases_run_grouped_by_variant_and_device_so_each_network_loads_once():
    cases = build_cases(
        _variants("m.a", "m.b"), select_grid(batch_sizes="1,4", devices="cpu,cpu-2t")
    )
    keys = [case.key for case in cases]
    blocks = [key for i, key in enumerate(keys) if i == 0 or keys[i - 1] != key]
    assert len(blocks) == len(set(blocks)) == 4


def test_raw_case_follows_its_model_case_and_shares_its_group():
    cases = build_cases(_variants("m.a"), select_grid(batch_sizes="1", devices="cpu"))
    assert [c.mode for c in cases] == ["model", "raw", "e2e"]
    assert cases[0].group == cases[1].group == "b1/cpu/model"
    assert cases[2].group == "b1/cpu/e2e"
    assert cases[1].id == "m.a-b1-cpu-raw"


# --- probes --------------------------------------------------------------------------------


def _python(code):
    return [sys.executable, "-c", code]


def test_probe_reports_a_segfaulting_child_by_signal_name():
    result = run_probe(_python("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"))
    assert not result
    assert (result.status, result.reason) == (
        "crashed",
        f"crashed: SIGSEGV (exit {-signal.SIGSEGV}) in probe",
    )


def test_probe_reports_a_hung_child_as_timed_out():
    start = time.perf_counter()
    result = run_probe(_python("import time; time.sleep(60)"), timeout=0.5)
    assert (result.status, result.reason) == ("timeout", "timed out after 0.5s in probe")
    assert time.perf_counter() - start < 30


def test_probe_error_keeps_the_last_real_stderr_line():
    code = "import sys; print('info: cuda noise', file=sys.stderr); raise ValueError('boom')"
    result = run_probe(_python(code))
    assert result.status == "error"
    assert result.reason == "probe failed (exit 1): ValueError: boom"


def test_probe_success_is_truthy():
    assert run_probe(_python("pass"))
    assert classify_exit(0, "").status == "ok"


# --- inputs --------------------------------------------------------------------------------


def test_image_batch_is_realistic_uint8_bgr_and_reproducible():
    frames = image_batch(3)
    assert frames.shape == (3, *IMAGE_SIZE, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames, image_batch(3))
    assert not np.array_equal(frames[0], frames[1])
    assert frames.std() > 20  # a photo, not a flat fill


def test_model_feed_matches_the_variant_input(tiny_manifest):
    frames = image_batch(2, size=(40, 50))
    for entry in tiny_manifest.variants:
        ((name, array),) = model_feed(entry, tiny_manifest, frames).items()
        assert name == entry.input.name
        assert array.dtype == np.dtype(entry.input.dtype)
        expected = (2, 40, 50, 3) if entry.is_raw_input else (2, 3, *tiny_manifest.preprocess.size)
        assert array.shape == expected


# --- runner cache --------------------------------------------------------------------------


def test_loaded_runners_load_once_and_release_the_oldest(tiny_manifest):
    from mge_harness.bench.loaded import LoadedRunners

    external, fused = (
        next(e for e in tiny_manifest.variants if e.preprocessing == p)
        for p in ("external", "fused")
    )
    runners = LoadedRunners(keep=1)
    first = runners.images(external, tiny_manifest, "cpu")
    assert runners.lite(external, tiny_manifest, "cpu") is first.model
    assert runners.images(external, tiny_manifest, "cpu") is first and runners.loads == 1
    second = runners.lite(fused, tiny_manifest, "cpu")
    assert runners.loads == 2 and not first.is_active and second.is_active
    runners.close()
    assert not second.is_active


# --- provenance and sidecar ----------------------------------------------------------------


def test_cpu_model_and_simd_flags_come_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Test CPU @ 2GHz\nflags\t\t: fpu avx2 sse4_2 avx512f\n\n"
        "processor\t: 1\nmodel name\t: Other\nflags\t\t: fpu\n"
    )
    model, flags = cpu_model_and_flags(cpuinfo)
    assert model == "Test CPU @ 2GHz"
    assert flags == [flag for flag in SIMD_FLAGS if flag in {"avx2", "sse4_2", "avx512f"}]
    assert cpu_model_and_flags(tmp_path / "missing") == ("unknown", [])


def test_sidecar_pairs_with_the_saved_run_and_is_not_a_run_file():
    saved = {"datetime": "2025-11-26T10:22:10.832146+00:00", "machine_info": {"node": "vm"}}
    document = sidecar_document([{"status": "crashed"}], saved, machine_info=None)
    assert document["datetime"] == saved["datetime"]
    assert document["machine_info"] == {"node": "vm"}
    name = sidecar_name(document["datetime"])
    assert name == "bench-20251126_102210.not-measured.json"
    # pytest-benchmark loads and numbers runs by this glob; the sidecar must stay out of it
    assert not fnmatch.fnmatch(name, "[0-9][0-9][0-9][0-9]_*.json")


def test_sidecar_without_a_saved_run_gets_its_own_time_and_machine():
    document = sidecar_document([{"status": "timeout"}], {}, machine_info={"node": "x"})
    assert document["machine_info"] == {"node": "x"} and document["datetime"]
    assert document["not_measured"] == [{"status": "timeout"}]


@pytest.fixture(scope="module")
def tiny_manifest():
    from mge_harness.exporters.manifest import load_manifest
    from mge_harness.exporters.release import builtin_release

    return load_manifest(builtin_release("tiny", progress=None))
