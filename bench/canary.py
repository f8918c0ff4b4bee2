"""A fixed machine-speed canary, timed in every benchmark session and saved in ``machine_info``.

Run-against-run compares see the machine's drift between the runs (another job starting, the
CPU clocking down) as a change of the code. The canary is the same small workload in every
session, so the ratio of two runs' canary medians is how much faster or slower the machine itself
was; ``reports.compare`` divides the candidate's timings by it and prints it.

The workload (:func:`workload`) uses the standard library only (no numpy, no MegEngine: a
different numpy build or thread setting would change it): an integer LCG loop in the
interpreter (core speed, and the share of the core this process gets) and copies of a 4 MiB
``bytearray`` (memory bandwidth, the other resource a neighbour takes). One call is about 4 ms
here. The session samples ``START_ROUNDS`` rounds before its first benchmark, then
``ROUNDS_PER_TEST`` after each benchmark test, at most ``MAX_ROUNDS`` in all, so it follows the
machine over the whole run at a cost of a few hundred ms (see ``bench.plugin``).
"""

from __future__ import annotations

import statistics
import time

#: Bump when :func:`workload` changes: canaries of different versions are not compared.
VERSION = 1

#: Rounds before the first benchmark, after each benchmark test, and the cap per session.
START_ROUNDS = 10
ROUNDS_PER_TEST = 3
MAX_ROUNDS = 200

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
