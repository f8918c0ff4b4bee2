"""Preprocessing stage breakdown: each recipe on its own, at each e2e frame size (``bench.stages``).

Opt-in: ``pytest bench/bench_stages.py --benchmark-autosave [--frame-sizes ...]`` (the file name
keeps it out of ``pytest bench/``, whose sessions and CI time it would change; name it beside
``bench`` to run both). Benchmark group ``stages``; ids ``stages-<recipe>-<H>x<W>``; the
per-stage medians are in ``extra_info["stages"]`` and ``reports.stages`` renders them.
"""

from __future__ import annotations

from mge_harness.bench.inputs import image_batch
from mge_harness.bench.stages import STAGES_GROUP, build_stage_cases, stage_info, stage_runner
from mge_harness.bench.timing import time_call


def pytest_generate_tests(metafunc):
    if "stage_case" in metafunc.fixturenames:
        from mge_harness.bench.plugin import STATE

        cases = build_stage_cases(metafunc.config.stash[STATE].grid)
        metafunc.parametrize("stage_case", cases, ids=[case.id for case in cases])


def test_stages(stage_case, bench_state, manifest, benchmark, tmp_path):
    frames = image_batch(1, stage_case.image_size)
    runner = stage_runner(stage_case, manifest.preprocess, tmp_path, frames)
    benchmark.group = STAGES_GROUP
    time_call(benchmark, bench_state.grid, runner)
    benchmark.extra_info.update(stage_info(stage_case, manifest, runner.stages()))
