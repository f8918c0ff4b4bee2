"""Paired timing: two calls timed alternately in one process, and the ratio of their medians.

Timing A and B in separate runs (or separate benchmarks of one run) mixes the difference between
them with whatever the machine did in between: on a shared 2-core machine that drift is larger
than the changes worth catching (issue 12: identical code "slower" by +46.75 % run against run).
Interleaving the rounds (A, B, B, A, A, B ...: the order flips every round, so neither side
always runs second) makes both sides see the same machine, and each round gives one pair.

Two summaries of the pairs, for two questions:

* :func:`ratio_of_medians`, the paired benchmarks' figure (``bench/test_paired.py``):
  median(B) / median(A) with a percentile bootstrap interval from ``scipy.stats.bootstrap``
  that resamples whole rounds (``paired=True``), seeded, so a saved run reproduces its own
  interval. Above 1 means B (the candidate) is slower.
* :func:`bootstrap_median` of the per-round ratios, ``bench.tune``'s speedup (kept as it was).

:func:`interleave` is the loop both use.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Untimed rounds of each side before the timed ones (first forwards allocate and warm caches).
WARMUP_ROUNDS = 2

#: Bootstrap resamples (``bench.tune``'s since it was written); the interval is the central
#: ``CONFIDENCE`` share.
BOOTSTRAP_SAMPLES = 2000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interleaved:
    """Per-round wall and process CPU seconds of two calls, shape (rounds, 2): column 0 is A."""

    wall: np.ndarray
    cpu: np.ndarray

    @property
    def rounds(self) -> int:
        return len(self.wall)

    def cpu_per_wall(self, side: int) -> float:
        """Process CPU time over wall time of one side: above 1 means it used more than a core."""
        return float(self.cpu[:, side].sum() / self.wall[:, side].sum())


def interleave(first: Callable[[], object], second: Callable[[], object], rounds: int,
               warmup: int = WARMUP_ROUNDS, start: int = 0) -> Interleaved:  # fmt: skip
    """Runs ``warmup`` untimed rounds of both, then ``rounds`` timed rounds, the order flipped
    every round (``first`` leads on even rounds counted from ``start``); each call is timed
    with ``perf_counter`` and ``process_time``."""
    for _ in range(warmup):
        first()
        second()
    wall = np.zeros((rounds, 2))
    cpu = np.zeros((rounds, 2))
    calls = (first, second)
    for index in range(rounds):
        order = (0, 1) if (start + index) % 2 == 0 else (1, 0)
        for side in order:
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            calls[side]()
            wall[index, side] = time.perf_counter() - start_wall
            cpu[index, side] = time.process_time() - start_cpu
    return Interleaved(wall, cpu)


def bootstrap_median(values, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0):
    """(median, low, high): the median of ``values`` and the central 95 % of its bootstrap."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(values), (samples, len(values)))
    medians = np.median(values[picks], axis=1)
    low, high = np.percentile(medians, [2.5, 97.5])
    return float(np.median(values)), float(low), float(high)


@dataclass(frozen=True)
class PairedRatio:
    """median(candidate) / median(baseline) of paired rounds, with its bootstrap interval."""

    ratio: float
    low: float
    high: float
    baseline_ms: float
    candidate_ms: float
    rounds: int
    confidence: float = CONFIDENCE

    def excludes(self, value: float) -> bool:
        """Whether ``value`` lies outside the interval (1: the two sides differ)."""
        return not self.low <= value <= self.high

    def to_dict(self) -> dict:
        return {
            "ratio": self.ratio,
            "interval": [self.low, self.high],
            "confidence": self.confidence,
            "baseline_ms": self.baseline_ms,
            "candidate_ms": self.candidate_ms,
            "rounds": self.rounds,
        }

    def __str__(self) -> str:
        return (
            f"{self.ratio:.3f}x [{self.low:.3f}, {self.high:.3f}] "
            f"({self.candidate_ms:.3g} ms against {self.baseline_ms:.3g} ms, {self.rounds} rounds)"
        )


def ratio_of_medians(baseline, candidate, seed: int = 0, samples: int = BOOTSTRAP_SAMPLES,
                     confidence: float = CONFIDENCE) -> PairedRatio:  # fmt: skip
    """The :class:`PairedRatio` of per-round seconds ``baseline`` and ``candidate`` (same length,
    round i of one paired with round i of the other)."""
    from scipy.stats import bootstrap

    base = np.asarray(baseline, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if base.shape != cand.shape or base.ndim != 1 or base.size < 3:
        raise ValueError(f"expected two equal 1-d timing series of >= 3 rounds, got "
                         f"{base.shape} and {cand.shape}")  # fmt: skip

    def statistic(b, c, axis=-1):
        return np.median(c, axis=axis) / np.median(b, axis=axis)

    result = bootstrap(
        (base, cand),
        statistic,
        paired=True,
        vectorized=True,
        n_resamples=samples,
        confidence_level=confidence,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return PairedRatio(
        ratio=float(statistic(base, cand)),
        low=float(interval.low),
        high=float(interval.high),
        baseline_ms=float(np.median(base) * 1e3),
        candidate_ms=float(np.median(cand) * 1e3),
        rounds=int(base.size),
        confidence=confidence,
    )
