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

:class:`Alternator` is the loop both use (``interleave`` runs it on its own).

Measured 2026-12-03 on the 2-vCPU Xeon shared with three other engineers' jobs (load average
6-16), ratio [95 % interval]:

* spin doubles (busy-waits on ``perf_counter``), 1 ms against 1.15 ms (a planted 15 %), 200
  rounds, twice at load average 10.7: 1.149 [1.148, 1.150] and 1.149 [1.143, 1.151];
* spin doubles, 1 ms against 1 ms: 1.000 [1.000, 1.001] and 0.979 [0.953, 1.000]. Longer
  spins suffer from the load: 3 ms against 3 ms over 40 rounds gave 0.81 [0.73, 1.15] at
  load 11.7 (a preempted spin overshoots), hence 1 ms in the tests;
* the resnet18 release against itself (``--baseline-release``), external and fused cbn-on,
  batches 1 and 4, model and e2e, 30 rounds each: 0.74-1.34, the widest [0.450, 1.523];
  1 of 8 intervals excludes 1 (1.261 [1.048, 2.562], e2e b1); none fails ``median:10%``.

On those eight resnet18 pairs the median of the per-round ratios (``round_ratio``, saved beside
it) was tighter in 8 of 8 and nearer 1 in 7 (0.95-1.15; fused b4 e2e 1.007 [0.953, 1.048] against
1.277 [0.892, 1.395]): a round's two calls share the machine's state, their medians less so.
The rules judge the ratio of medians, which is what a deployment's latency is.

A planted slowdown on a real model, same load (load average 9.8; resnet18 b1 ``model``, the
candidate's forward followed by a spin of 15 % of the fastest warm-up forward, 60 rounds):
fused 1.210 [1.002, 1.593], external 0.862 [0.652, 1.227]; round ratios 1.212 [1.140, 1.332]
and 1.128 [0.948, 1.216]. Neither ratio of medians fails ``median:10%`` at that load.

So the interval is honest about the load (wide when the machine is), a planted 15 % fails
``median:10%`` with its interval far from 1, and a real model's 15 % change is resolved only
when the machine is quiet enough for intervals narrower than that: read the interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mge_harness.exporters.poller import work_cpu_time

#: Untimed rounds of each side before the timed ones (first forwards allocate and warm caches).
WARMUP_ROUNDS = 2

#: Bootstrap resamples (``bench.tune``'s since it was written); the interval is the central
#: ``CONFIDENCE`` share.
BOOTSTRAP_SAMPLES = 2000
CONFIDENCE = 0.95


class Alternator:
    """Calls ``first`` and ``second`` once per call, the order flipped every call (``first``
    leads on even calls), and keeps each call's wall and CPU seconds (``work_cpu_time``).

    A pytest-benchmark round (``benchmark.pedantic(alternator, rounds=N)``) is one call, so
    the benchmark's own figures are those of a round of both sides; the sides' own timings are
    :attr:`wall` and :attr:`cpu`, shape (rounds, 2), column 0 is ``first``.
    """

    def __init__(self, first: Callable[[], object], second: Callable[[], object]):
        self.calls = (first, second)
        self._wall: list[tuple[float, float]] = []
        self._cpu: list[tuple[float, float]] = []

    def __call__(self) -> None:
        order = (0, 1) if len(self._wall) % 2 == 0 else (1, 0)
        wall, cpu = [0.0, 0.0], [0.0, 0.0]
        for side in order:
            start_cpu, start_wall = work_cpu_time(), time.perf_counter()
            self.calls[side]()
            wall[side] = time.perf_counter() - start_wall
            cpu[side] = work_cpu_time() - start_cpu
        self._wall.append((wall[0], wall[1]))
        self._cpu.append((cpu[0], cpu[1]))

    def warm_up(self, rounds: int) -> float:
        """Runs ``rounds`` untimed rounds of both; returns the fastest round's seconds (for
        sizing the timed rounds; 0 for none). Kept out of :attr:`wall`."""
        fastest = 0.0
        for _ in range(rounds):
            start = time.perf_counter()
            self.calls[0]()
            self.calls[1]()
            spent = time.perf_counter() - start
            fastest = spent if not fastest else min(fastest, spent)
        return fastest

    @property
    def wall(self) -> np.ndarray:
        return np.asarray(self._wall, dtype=np.float64).reshape(-1, 2)

    @property
    def cpu(self) -> np.ndarray:
        return np.asarray(self._cpu, dtype=np.float64).reshape(-1, 2)

    @property
    def rounds(self) -> int:
        return len(self._wall)

    def cpu_per_wall(self, side: int) -> float:
        """Process CPU time over wall time of one side: above 1 means it used more than a core."""
        return float(self.cpu[:, side].sum() / self.wall[:, side].sum())


def interleave(first: Callable[[], object], second: Callable[[], object], rounds: int,
               warmup: int = WARMUP_ROUNDS) -> Alternator:  # fmt: skip
    """``warmup`` untimed rounds of both, then ``rounds`` timed rounds of an :class:`Alternator`."""
    alternator = Alternator(first, second)
    alternator.warm_up(warmup)
    for _ in range(rounds):
        alternator()
    return alternator


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


# --- paired benchmarks (bench/test_paired.py) -----------------------------------------------

#: What a paired session can pair: the release under test against ``--baseline-release``, two
#: device configs (``--pair-devices A,B``), two variants (``--pair-variants A,B``).
KINDS = ("release", "device", "variant")

#: Timing modes a pair can run in (``raw`` is the harness-overhead baseline, not a deployment).
MODES = ("model", "e2e")


@dataclass(frozen=True)
class Side:
    """One side of a pair: a variant of a release on a device config."""

    variant: object  # exporters.manifest.VariantEntry
    manifest: object  # exporters.manifest.Manifest
    device: str

    @property
    def key(self) -> tuple[str, str, str]:
        """What is probed once per session (``BenchState.probe``): variant, config, release."""
        return self.variant.id, self.device, str(self.manifest.root)

    def describe(self) -> dict:
        return {
            "variant": self.variant.id,
            "device": self.device,
            "release": str(self.manifest.root),
        }


@dataclass(frozen=True)
class PairedCase:
    """A paired benchmark: ``candidate`` timed against ``baseline`` at one batch and mode."""

    kind: str
    baseline: Side
    candidate: Side
    batch: int
    mode: str

    @property
    def id(self) -> str:
        cand, base, tail = self.candidate, self.baseline, f"b{self.batch}"
        if self.kind == "release":
            return f"{cand.variant.id}-{tail}-{cand.device}-{self.mode}-vs-baseline-release"
        if self.kind == "device":
            return f"{cand.variant.id}-{tail}-{cand.device}-vs-{base.device}-{self.mode}"
        return f"{cand.variant.id}-vs-{base.variant.id}-{tail}-{cand.device}-{self.mode}"

    @property
    def group(self) -> str:
        return f"paired-{self.kind}/b{self.batch}/{self.mode}"

    def info(self) -> dict:
        """``extra_info``: the candidate's case fields, mode ``paired-<mode>`` (so a paired
        row never matches a plain one in a compare), and ``paired`` naming both sides."""
        from mge_harness.bench.cases import BenchCase
        from mge_harness.bench.timing import case_info

        side = self.candidate
        info = case_info(BenchCase(side.variant, self.batch, side.device, self.mode), side.manifest)
        info["mode"] = f"paired-{self.mode}"
        info["paired"] = {
            "kind": self.kind,
            "mode": self.mode,
            "baseline": self.baseline.describe(),
            "candidate": side.describe(),
        }
        return info


def build_paired_cases(kind: str, manifest, grid, baseline_manifest=None, pair=()) -> list:
    """The paired cases of one kind over ``grid``'s batches (and devices, but for ``device``
    pairs) in both :data:`MODES`; ``pair`` is the two device configs or variant ids (baseline
    first). ``release`` pairs every variant id both releases have."""
    if kind == "release":
        theirs = {entry.id: entry for entry in baseline_manifest.variants}
        sides = [
            (Side(theirs[entry.id], baseline_manifest, device), Side(entry, manifest, device))
            for device in grid.devices
            for entry in manifest.variants
            if entry.id in theirs
        ]
    elif kind == "device":
        sides = [
            (Side(entry, manifest, pair[0]), Side(entry, manifest, pair[1]))
            for entry in manifest.variants
        ]
    else:
        first, second = (manifest.variant(name) for name in pair)
        sides = [
            (Side(first, manifest, device), Side(second, manifest, device))
            for device in grid.devices
        ]
    return [
        PairedCase(kind, base, cand, batch, mode)
        for base, cand in sides
        for batch in grid.batch_sizes
        for mode in MODES
    ]


def side_call(side: Side, runners, batch: int, mode: str) -> Callable[[], object]:
    """The timed call of one side, its input ready (``bench.timing``'s ``model``/``e2e``)."""
    from mge_harness.bench.inputs import frame_size, image_batch, model_feed

    frames = image_batch(batch, frame_size(side.variant))
    if mode == "model":
        runner = runners.lite(side.variant, side.manifest, side.device)
        runner.set_inputs(model_feed(side.variant, side.manifest, frames))
        return runner.run
    runner = runners.images(side.variant, side.manifest, side.device)
    feed = {"data": frames}
    return lambda: runner.infer(feed)


def time_pair(benchmark, grid, baseline: Callable[[], object], candidate: Callable[[], object],
              seed: int = 0) -> PairedRatio | None:  # fmt: skip
    """Times ``baseline`` and ``candidate`` alternately as the rounds of one pytest-benchmark
    benchmark (each round runs both, see :class:`Alternator`), sized like ``bench.timing``'s
    rounds from the warm-up; the :class:`PairedRatio` (candidate / baseline) and both sides'
    per-round seconds go into ``extra_info["paired"]``, with ``round_ratio``: the median of the
    per-round ratios and its bootstrap interval (``bench.tune``'s figure; see the module
    docstring for how the two compare). None under ``--benchmark-disable``."""
    alternator = Alternator(baseline, candidate)
    if benchmark.disabled:
        benchmark.pedantic(alternator)
        return None
    fastest = alternator.warm_up(grid.warmup_rounds)
    rounds = max(3, grid.rounds_for(fastest) if fastest else grid.min_rounds)
    benchmark.pedantic(alternator, rounds=rounds)
    result = ratio_of_medians(alternator.wall[:, 0], alternator.wall[:, 1], seed=seed)
    per_round = bootstrap_median(alternator.wall[:, 1] / alternator.wall[:, 0], seed=seed)
    paired = benchmark.extra_info.setdefault("paired", {})
    paired.update(
        result.to_dict(),
        round_ratio={"median": per_round[0], "interval": list(per_round[1:])},
        baseline_cpu_per_wall=alternator.cpu_per_wall(0),
        cpu_per_wall=alternator.cpu_per_wall(1),
        baseline_s=alternator.wall[:, 0].tolist(),
        candidate_s=alternator.wall[:, 1].tolist(),
    )
    return result
