"""A fixed machine-speed canary, timed in every benchmark session and saved in ``machine_info``.

Run-against-run compares see the machine's drift between the runs (another job starting, the
CPU clocking down) as a change of the code. The canary is the same small workload in every
session, so the ratio of two runs' canary medians is how much faster or slower the machine itself
was; ``reports.compare`` divides the candidate's timings by it and prints it.

The workload (:func:`workload`) uses the standard library only (no numpy, no MegEngine: a
different numpy build or thread setting would change it): an integer LCG loop in the
interpreter (core speed, and the share of the core this process gets) and a copy of a 4 MiB
``bytearray`` (memory bandwidth, the other resource a neighbour takes). The session samples
``START_ROUNDS`` rounds before its first benchmark, then ``ROUNDS_PER_TEST`` after each
benchmark test (``bench.plugin``), at most ``MAX_ROUNDS`` in all, so it follows the machine
over the whole run; ``after`` keeps each test's rounds for ``reports.compare``'s drift band.

Measured 2026-12-03 on the 2-vCPU Xeon shared with three other engineers' jobs (load average
6-16), six quick-grid sessions of 25 benchmarks (85 canary rounds each):

| release  | fastest call | session medians          | canary time per session | session |
|----------|--------------|--------------------------|-------------------------|---------|
| tiny     | 4.2-5.9 ms   | 11.3, 11.3, 14.2 ms      | 1.35-1.83 s             | 23-65 s |
| resnet18 | 1.9-2.1 ms   | 10.3, 4.3, 10.2 ms       | 0.84-1.40 s             | 237-296 s |

So about 2 ms a call uncontended, 0.2 s per session on a quiet machine (at most 100 rounds),
and under 0.6 % of a resnet18 session under that load. The medians moving 2.4x between runs of the
same code is the drift this canary exists to show.
"""

from __future__ import annotations

import statistics
import time

#: Bump when :func:`workload` changes: canaries of different versions are not compared.
VERSION = 1

#: Rounds before the first benchmark, after each benchmark test, and the cap per session.
START_ROUNDS = 10
ROUNDS_PER_TEST = 3
MAX_ROUNDS = 100

_LCG_STEPS = 10_000
_COPY_BYTES = 4 << 20
_COPIES = 2


def workload() -> int:
    """The fixed work: ``_LCG_STEPS`` LCG steps, then ``_COPIES`` copies of a 4 MiB buffer."""
    x, acc = 12345, 0
    for _ in range(_LCG_STEPS):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        acc ^= x >> 7
    buffer = bytearray(_COPY_BYTES)
    view = memoryview(buffer)
    for index in range(_COPIES):
        copy = bytes(view)
        acc ^= copy[index]
    return acc


class Canary:
    """Collects canary rounds (wall seconds per :func:`workload` call) over one session."""

    def __init__(self, max_rounds: int = MAX_ROUNDS):
        self.max_rounds = max_rounds
        self.samples: list[float] = []
        self.after: dict[str, list[float]] = {}

    def sample(self, rounds: int, after: str | None = None) -> None:
        """Times up to ``rounds`` more calls (none once ``max_rounds`` are in); ``after`` names
        the test they follow (the saved benchmark's ``fullname``)."""
        taken = []
        for _ in range(min(rounds, self.max_rounds - len(self.samples))):
            start = time.perf_counter()
            workload()
            taken.append(time.perf_counter() - start)
        self.samples += taken
        if after is not None and taken:
            self.after.setdefault(after, []).extend(taken)

    def record(self) -> dict:
        """The ``machine_info["canary"]`` record; samples ``START_ROUNDS`` first if empty."""
        if not self.samples:
            self.sample(START_ROUNDS)
        return {
            "version": VERSION,
            "median_s": statistics.median(self.samples),
            "rounds": len(self.samples),
            "samples_s": list(self.samples),
            "after": dict(self.after),
        }
