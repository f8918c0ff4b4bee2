"""MegEngine Lite latency: every variant x batch size x device config x timing mode.

Run ``pytest bench/ --benchmark-autosave`` (quick grid) or add ``--full-grid``. Test ids are
``<variant id>-b<batch>-<device>-<mode>``; benchmark groups are ``b<batch>/<device>/<mode>`` so
the variants line up for comparison. See ``bench.cases`` for the modes and ``bench.plugin`` for
the options.
"""

from __future__ import annotations

import pytest

from mge_harness.bench.timing import TIMERS, case_info, throughput
from mge_harness.exporters.errors import first_line


def test_latency(bench_case, bench_state, manifest, benchmark, request):
    blocker = bench_state.blocker(bench_case, manifest.root)
    if blocker:
        bench_state.record(bench_case, manifest, request.node, *blocker)
        pytest.skip(f"{bench_case.variant.id} on {bench_case.device}: {blocker[1]}")
    benchmark.group = bench_case.group
    benchmark.extra_info.update(case_info(bench_case, manifest))
    timer = TIMERS[bench_case.mode]
    try:
        timer(bench_case, manifest, bench_state.runners, benchmark, bench_state.grid)
    except Exception as err:
        reason = f"{type(err).__name__}: {first_line(err)}"
        bench_state.record(bench_case, manifest, request.node, "error", reason)
        raise
    benchmark.extra_info.update(throughput(benchmark.stats, bench_case.batch))
