"""The preprocessing stage breakdown: what bench.stages measures and how reports.stages shows it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mge_harness.bench.grid import select_grid
from mge_harness.bench.stages import (
    HOST,
    RECIPES,
    GraphStages,
    HostStages,
    build_stage_cases,
    median_stages,
    profile_stages,
    stage_info,
)
from mge_harness.exporters.preprocess import PreprocessSpec
from mge_harness.reports.stages import stage_rows, stages_table

SPEC = PreprocessSpec(size=(16, 24))


def test_stage_cases_cover_every_recipe_at_every_frame_size():
    cases = build_stage_cases(select_grid(frame_sizes="480x640,1080x1920"))
    assert [(c.recipe, c.image_size) for c in cases] == [
        (r, s) for s in ((480, 640), (1080, 1920)) for r in RECIPES
    ]
    assert cases[0].id == "stages-host-480x640"


def _profile(spans):
    """A Lite performance profile with one operator per (type, start, end) in ``spans``."""
    ids = [str(i) for i in range(len(spans))]
    return {
        "graph_exec": {
            "comp_seq": ids,
            "operator": {i: {"type": t, "name": f"{t}[{i}]"} for i, (t, _, _) in zip(ids, spans)},
        },
        "profiler": {
            "device": {i: {"cpu": {"start": a, "end": b}} for i, (_, a, b) in zip(ids, spans)}
        },
    }


def test_profile_sums_spans_per_operator_type_and_drops_the_output_callback():
    profile = _profile(
        [
            ("TypeCvt", 0.0, 0.002),
            ("Elemwise", 0.002, 0.0025),
            ("Elemwise", 0.003, 0.004),
            ("ComputingGraphImpl::CallbackCaller", 0.004, 0.009),
        ]
    )
    stages = profile_stages(profile)
    assert set(stages) == {"TypeCvt", "Elemwise"}
    assert np.isclose(stages["TypeCvt"], 2.0) and np.isclose(stages["Elemwise"], 1.5)


def test_median_counts_a_missing_stage_as_zero():
    assert median_stages([{"a": 1.0}, {"a": 3.0, "b": 2.0}, {"a": 2.0}]) == {"a": 2.0, "b": 0.0}


def test_a_graph_recipe_is_broken_into_its_operators(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (1, 48, 64, 3), np.uint8)
    graph = GraphStages("fused", SPEC, tmp_path, frames)
    graph()  # the timed call runs
    stages = graph.stages(rounds=3)
    assert {"copy-in", "TypeCvt", "ResizeForward", "Elemwise", "fetch"} <= set(stages)
    assert all(ms >= 0 for ms in stages.values())
    exact = GraphStages("fused-exact", SPEC, tmp_path, frames).stages(rounds=3)
    assert "IndexingMultiAxisVec" in exact and "ResizeForward" not in exact


def test_host_stages_are_its_two_passes():
    frames = np.random.default_rng(0).integers(0, 256, (1, 48, 64, 3), np.uint8)
    host = HostStages(SPEC, frames)
    host()
    assert set(host.stages(rounds=3)) == {"cv2.resize", "normalise+NCHW"}


def _saved(recipe, size, median_s, stages):
    from types import SimpleNamespace

    from mge_harness.bench.stages import StageCase

    manifest = SimpleNamespace(model="m")
    info = stage_info(StageCase(recipe, size), manifest, stages)
    return {"name": recipe, "stats": {"median": median_s}, "extra_info": info}


def test_table_lines_recipes_up_against_the_host_at_each_size():
    saved = [
        _saved("fused", (480, 640), 0.003, {"copy-in": 0.1, "ResizeForward": 1.5, "Tiny": 0.001}),
        _saved(HOST, (480, 640), 0.001, {"cv2.resize": 0.6, "normalise+NCHW": 0.3}),
        _saved(HOST, (1080, 1920), 0.002, {"cv2.resize": 1.2, "normalise+NCHW": 0.4}),
        {"name": "other", "stats": {"median": 1.0}, "extra_info": {"mode": "e2e"}},
    ]
    table = stages_table(stage_rows(saved))
    lines = table.splitlines()
    assert lines[0].split(" | ")[5:] == [
        "cv2.resize",
        "normalise+NCHW",
        "copy-in",
        "ResizeForward",
        "rest |",
    ]
    assert "Tiny" not in lines[0]  # under SHOWN_MS everywhere
    assert len(lines) == 2 + 3  # header, rule, three stage rows; the e2e row is not one
    fused = next(line for line in lines if "| fused |" in line)
    assert "| 3 | 3.00x | ResizeForward (1.5 ms) |" in fused
    assert fused.endswith("| 1.4 |")  # 3 ms total less 1.6 ms of stages (Tiny included)
    # VGA rows before full-HD rows
    assert lines.index(fused) < next(i for i, line in enumerate(lines) if "1080x1920" in line)


def test_the_last_run_of_a_recipe_counts_and_no_stage_rows_give_nothing():
    rows = stage_rows(
        [
            _saved(HOST, (8, 8), 0.001, {"cv2.resize": 0.5}),
            _saved(HOST, (8, 8), 0.002, {"cv2.resize": 0.7}),
        ]
    )
    table = stages_table(rows)
    assert len(table.splitlines()) == 3 and "| 2 | 1.00x | cv2.resize (0.7 ms) |" in table
    assert stages_table(stage_rows([])) == ""
    assert stages_table(pd.DataFrame({"mode": ["e2e"], "stages": [None]})) == ""


def _bench_session(*args):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    environ.update(PYTHONPATH=str(root))
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *map(str, args)]
    return subprocess.run(
        command, cwd=root, env=environ, capture_output=True, text=True, timeout=600
    )


def test_stage_benchmarks_are_opt_in_and_save_their_breakdown(tmp_path):
    import json

    from mge_harness.exporters.release import builtin_release

    release = builtin_release("tiny", progress=None)
    plain = _bench_session("bench/", "--release", release, "--collect-only")
    assert plain.returncode == 0, plain.stderr
    assert "test_stages[" not in plain.stdout
    saved = tmp_path / "stages.json"
    result = _bench_session(
        "bench/bench_stages.py", "--release", release, "--frame-sizes", "48x64",
        "--benchmark-json", saved,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    benchmarks = json.loads(saved.read_text())["benchmarks"]
    assert sorted(b["extra_info"]["preprocessing"] for b in benchmarks) == sorted(RECIPES)
    assert {b["group"] for b in benchmarks} == {"stages"}
    table = stages_table(stage_rows(benchmarks))
    assert len(table.splitlines()) == 2 + len(RECIPES) and "48x64" in table


def test_the_report_shows_the_stage_breakdown_of_saved_stage_runs(tmp_path):
    from mge_harness.reports import synthetic as syn
    from mge_harness.reports.build import write_report

    stages = [
        _saved("fused", (480, 640), 0.003, {"copy-in": 0.1, "ResizeForward": 1.5}),
        _saved(HOST, (480, 640), 0.001, {"cv2.resize": 0.6, "normalise+NCHW": 0.3}),
    ]
    syn.save(tmp_path / "runs", syn.saved_run(stages), 1)
    write_report([tmp_path / "runs"], gate=None, out=tmp_path / "out")
    report = (tmp_path / "out" / "report.md").read_text()
    section = report.split("## Preprocessing stages", 1)[1].split("\n## ", 1)[0]
    assert "| 480x640 | fused | 3 | 3.00x | ResizeForward (1.5 ms) |" in section
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Preprocessing stages" in html and "ResizeForward (1.5 ms)" in html
