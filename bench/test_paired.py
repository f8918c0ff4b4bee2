"""Paired benchmarks: two things timed in one benchmark, their rounds interleaved.

Collected only in a paired session, which runs these instead of ``test_latency`` (see
``bench.plugin``): ``pytest bench/ --baseline-release DIR`` (the same variant ids of DIR against
the release under test), ``--pair-devices A,B`` or ``--pair-variants A,B`` (A is the baseline).
Each benchmark saves the ratio median(candidate) / median(baseline) with its 95 % bootstrap
interval in ``extra_info["paired"]`` (``bench.paired``); ``python -m reports --paired RUN
--fail-on median:10%`` checks them.
"""

from __future__ import annotations

import pytest

from mge_harness.bench.paired import side_call, time_pair
from mge_harness.exporters.errors import first_line


def test_paired(paired_case, bench_state, benchmark, request):
    for side in (paired_case.baseline, paired_case.candidate):
        blocker = bench_state.blocker(side, side.manifest.root)
        if blocker:
            bench_state.record_paired(paired_case, request.node, *blocker)
            pytest.skip(f"{side.variant.id} on {side.device}: {blocker[1]}")
    benchmark.group = paired_case.group
    benchmark.extra_info.update(paired_case.info())
    try:
        baseline, candidate = (
            side_call(side, runners, paired_case.batch, paired_case.mode)
            for side, runners in zip(
                (paired_case.baseline, paired_case.candidate), bench_state.paired_runners
            )
        )
        time_pair(benchmark, bench_state.grid, baseline, candidate)
    except Exception as err:
        reason = f"{type(err).__name__}: {first_line(err)}"
        bench_state.record_paired(paired_case, request.node, "error", reason)
        raise
