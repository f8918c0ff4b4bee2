"""Find the fastest Lite configuration that is equivalent to Lite's default on this machine.

::

    python -m bench.tune --release DIR [--variants ID,ID] [--batches 1,4] [--configs A,B]
                         [--rounds N] [--probe-timeout SECONDS]

For each variant and batch size, every candidate CPU config (``exporters.devices``) goes through
three steps, and the first that fails decides its verdict:

1. **probe** in a child process (``exporters.probe``): a crash or hang is ``crashed`` /
   ``timeout`` (a load or run error ``error``), and the sweep goes on with the next config;
2. **equivalence** against the default ``cpu`` config on the same variant: ``EQUIVALENCE_IMAGES``
   seeded uniform uint8 images at the model's input size, compared with
   ``equivalence.compare`` under ``TOLERANCE``; failing it is ``not equivalent``;
3. **paired timing** (``bench.paired``, the loop the paired benchmarks use too): default and
   candidate forwards alternate in this process (the order flips every round), each forward timed with ``perf_counter`` and the process CPU time
   less MegEngine's event poller's (``exporters.poller.work_cpu_time``); the speedup is
   the median of the per-round ratios default/candidate, with a 95 % bootstrap interval of that
   median. ``cpu/wall`` is the candidate's CPU time over its wall time: above 1 means
   it kept more than one core busy.

The timed call is ``LiteRunner.run()`` (forward + wait) with the input already in the Lite
tensor, as in the ``model`` benchmarks (480x640 camera frames; external variants get them
preprocessed on the host first). Default variants: the ``external`` and ``fused`` ones, the
two deployments a user picks between (``fused-fast`` trades accuracy for speed, and
``identity-warp`` is a test construct). Candidates: the CPU configs whose settings a
``LiteConfig`` plus a thread count express (what ``tuned.json`` and
``exporters.tuned.lite_config`` carry), all of them but ``cpu`` by default. Fast-run policies are
set on the network after loading, so they are not candidates (and ``LITE_ALGO_PROFILE`` alone
never finished a ResNet18 forward, MEGENGINE_NOTES section 8).

A release with an int8 variant (``--variants int8``) gets, for each swept float variant of the
same preprocessing, rows with config ``int8``: the int8 variant at the default config timed
paired against the float variant at the default config, verdict ``int8``. Its equivalence is
the gate's ``int8`` check (it cannot meet this sweep's float tolerance), so it is reported
beside the configs and never recommended; int8 variants are not swept themselves (int8 with
the NCHW88/NCHW44 layouts falls back to kernels taking 20-50 s per forward, MEGENGINE_NOTES
section 8). Measured int8 speedups on resnet18 and efficientnet_lite0: ``docs/INT8.md``.

The recommendation per variant is the ``ok`` config (probed, equivalent and timed at every
batch size) whose interval lies above 1 at every batch size, with the largest worst-batch
speedup; ``cpu`` when none is. The baseline is probed too: when it crashes, hangs or fails
on a variant, that variant gets its rows and no recommendation (``null``). The choice is by
wall time: check cpu/wall before deploying a multi-thread winner on a shared machine. ``DIR/tuned.json`` gets, per variant, the
recommendation (config name, Lite options, threads, speedup and interval per batch, the
equivalence figures) and every sweep row; ``exporters.tuned.lite_config`` reads it back.

Tolerance: ``atol`` is ``ATOL_SCALE`` (1e-5) of the largest ``|logit|`` of the default outputs,
``rtol`` 0, per-row cosine at least ``COSINE_MIN`` (1 - 1e-9). Measured noise of ``cpu-nchw88``
against ``cpu`` (16 seeded uniform uint8 images at the model's input size, batches 1 and 4, the
external and fused variants with and without conv-bias fusion; worst case; 2026-12 on the
2-core Intel Xeon with AVX-512 this sweep ran on). ``cpu-nchw88-weightpre`` is identical to
``cpu-nchw88``; ``cpu-weightpre``, ``cpu-record`` and ``cpu-2t`` are bitwise equal to ``cpu``:

| model              | max abs | largest abs logit | max abs / largest | max rel | 1 - cosine |
|--------------------|---------|-------------------|-------------------|---------|------------|
| tiny               | 1.67e-6 | 5.16              | 3.2e-7            | 2.9e-5  | 5.8e-14    |
| resnet18           | 2.59e-4 | 228               | 1.1e-6            | 0.12    | 1.9e-13    |
| efficientnet_lite0 | 1.07e-5 | 7.16              | 1.5e-6            | 0.31    | 2.2e-12    |

The relative error is large only on logits near 0, hence no rtol. ``ATOL_SCALE`` leaves a
margin of 0.85 (efficientnet_lite0) to 0.97 (tiny); in the resnet18 sweeps nchw88 and nchw44
used at most 0.094 of it (margin >= 0.906). A planted config that moves outputs by 1e-4 of the
largest logit fails it (tests/test_tune.py).

Measured on resnet18 (``--rounds 30``, batches 1 and 4, same machine, shared with another
engineer's jobs: load average 2-4.5 on 2 cores), speedup over ``cpu`` [95 % interval], cpu/wall:

| config               | external b1       | external b4       | fused b1          | fused b4          |
|----------------------|-------------------|-------------------|-------------------|-------------------|
| cpu-2t               | 1.34 [1.11, 1.47] | 1.61 [1.57, 1.79] | 0.95 [0.81, 1.16] | 1.01 [0.94, 1.05] |
| cpu-record           | 1.03 [0.94, 1.11] | 1.05 [0.97, 1.07] | 1.19 [1.08, 1.35] | 1.05 [1.01, 1.10] |
| cpu-weightpre        | 1.04 [0.93, 1.08] | 1.00 [0.99, 1.04] | 1.01 [0.97, 1.06] | 1.00 [0.99, 1.02] |
| cpu-nchw88           | 0.91 [0.88, 0.94] | 0.89 [0.88, 0.92] | 0.92 [0.91, 0.97] | 0.89 [0.87, 0.91] |
| cpu-nchw88-weightpre | 0.91 [0.89, 0.95] | 0.89 [0.88, 0.91] | 0.99 [0.92, 1.04] | 0.92 [0.89, 0.93] |
| cpu-nchw44           | 0.29 [0.28, 0.30] | 0.23 [0.22, 0.23] | 0.25 [0.24, 0.26] | 0.26 [0.25, 0.26] |

Default ``cpu`` forward: 28-33 ms (external, b1), 107-120 ms (b4). Recommended: ``cpu-2t`` for
external (cpu/wall 1.96-1.98: it buys 1.3-1.6x with a second core), ``cpu-record`` for fused
(cpu/wall 0.65-0.69 in that run: the process got under one core, so the fused cpu-2t figures
say little). An earlier 20-round sweep agreed within the intervals (nchw88 0.94 [0.89, 0.96]
and 0.94 [0.92, 0.95] external). NCHW88 does NOT pay here: MEGENGINE_NOTES section 8's 0.23x
was measured on an AMD EPYC Zen 3 without AVX-512; on this AVX-512 Xeon it is 0.89-0.92x (the
notes saw 1.17x slower on an earlier AVX-512 machine), and no config crashed: nchw44 set at
load runs, 4x slower. Hence: re-run the sweep on the deployment machine.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mge_harness.bench.grid import parse_batch_sizes
from mge_harness.bench.inputs import IMAGE_SIZE, frame_size, image_batch, model_feed
from mge_harness.bench.paired import BOOTSTRAP_SAMPLES, WARMUP_ROUNDS, bootstrap_median, interleave
from mge_harness.exporters.devices import DEVICE_CONFIGS, DeviceConfig, get_device_config
from mge_harness.exporters.errors import HarnessError, first_line
from mge_harness.exporters.files import atomic_write_json
from mge_harness.exporters.probe import (
    DEFAULT_TIMEOUT_S,
    ProbeResult,
    check_timeout,
    probe_variants,
)

#: The config every candidate is compared with and timed against: Lite's defaults, one thread.
BASELINE = "cpu"

#: Preprocessing kinds swept by default (see the module docstring).
DEFAULT_PREPROCESSINGS = ("external", "fused")

#: How many seeded images the equivalence check runs (in batches of the swept batch size).
EQUIVALENCE_IMAGES = 4

#: Timed rounds per config and batch size (``bench.paired.WARMUP_ROUNDS`` untimed ones first).
DEFAULT_ROUNDS = 20

#: Where the sweep is written, inside the release folder.
TUNED_JSON = "tuned.json"

#: The equivalence tolerance, scale-free: ``atol`` is this share of the largest ``|logit|`` of
#: the default config's outputs, no rtol (logits near 0 make relative errors meaningless), and
#: a per-row cosine of at least ``COSINE_MIN``. From the noise table in the module docstring:
#: 7x the worst error seen (efficientnet_lite0), 450x the worst 1 - cosine.
ATOL_SCALE = 1e-5
COSINE_MIN = 1 - 1e-9

#: Verdicts, in the order a config can fail; ``int8`` marks the int8 variant's row.
VERDICTS = ("crashed", "timeout", "error", "not equivalent", "ok", "int8")

#: The pseudo-config of a float variant's row that times its int8 variant (``int8_partner``).
INT8 = "int8"


def tolerance(reference: np.ndarray):
    """The tolerance of a candidate against ``reference``, the default config's outputs.

    The rule is ``equivalence.compare``'s, the harness's only pass rule (the one import from
    equivalence/ into bench/: a second rule would drift; imported lazily).
    """
    from mge_harness.equivalence.compare import Tolerance

    scale = float(np.max(np.abs(reference))) if reference.size else 0.0
    return Tolerance(atol=ATOL_SCALE * scale, rtol=0.0, cosine_min=COSINE_MIN)


def default_candidates() -> tuple[str, ...]:
    """Every CPU config but the baseline that has no algorithm policy (see the docstring)."""
    return tuple(
        c.name
        for c in DEVICE_CONFIGS.values()
        if c.device == "cpu" and c.name != BASELINE and c.algo_policy is None
    )


@dataclass
class Row:
    """One candidate config on one variant at one batch size."""

    variant: str
    batch: int
    config: str
    verdict: str
    reason: str = ""
    speedup: float = math.nan
    interval: tuple[float, float] = (math.nan, math.nan)
    cpu_per_wall: float = math.nan
    baseline_cpu_per_wall: float = math.nan
    baseline_ms: float = math.nan
    candidate_ms: float = math.nan
    rounds: int = 0
    equivalence: dict = field(default_factory=dict)

    @property
    def significant(self) -> bool:
        """Timed, and faster than the baseline across the whole interval."""
        return self.verdict == "ok" and self.interval[0] > 1.0

    def to_dict(self) -> dict:
        return {
            "variant": self.variant,
            "batch": self.batch,
            "config": self.config,
            "verdict": self.verdict,
            "reason": self.reason,
            "speedup": _finite(self.speedup),
            "interval": [_finite(v) for v in self.interval],
            "cpu_per_wall": _finite(self.cpu_per_wall),
            "baseline_cpu_per_wall": _finite(self.baseline_cpu_per_wall),
            "baseline_ms": _finite(self.baseline_ms),
            "candidate_ms": _finite(self.candidate_ms),
            "rounds": self.rounds,
            "equivalence": self.equivalence,
        }


def _finite(value: float):
    return value if math.isfinite(value) else None


# --- the three steps ------------------------------------------------------------------------


def equivalence_images(count: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """``count`` seeded uniform uint8 BGR NHWC images of ``size`` (height, width)."""
    return np.random.default_rng(seed).integers(0, 256, (count, *size, 3), np.uint8)


def outputs_on(runner, images: np.ndarray, batch: int) -> dict[str, np.ndarray]:
    """Every output of ``runner`` on ``images``, fed in batches of ``batch``, stacked by name."""
    chunks: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(images), batch):
        for name, value in runner.infer({"data": images[start : start + batch]}).items():
            chunks.setdefault(name, []).append(value)
    return {name: np.concatenate(values) for name, values in chunks.items()}


def compare_all(reference: dict[str, np.ndarray], outputs: dict[str, np.ndarray]):
    """The worst comparison over every output, each under its own scale's tolerance."""
    from mge_harness.equivalence.compare import compare_outputs

    if set(outputs) != set(reference):  # status "shape", naming both sets of outputs
        return compare_outputs(reference, outputs, tolerance(next(iter(reference.values()))))
    results = [compare_outputs({n: v}, {n: outputs[n]}, tolerance(v)) for n, v in reference.items()]
    return min(results, key=lambda r: (bool(r), r.margin))


def paired_timing(baseline, candidate, rounds: int, warmup: int = WARMUP_ROUNDS) -> dict:
    """Alternates ``baseline()`` and ``candidate()`` (``bench.paired.interleave``: order flipped
    every round); per-round speedups baseline/candidate, their median with a bootstrap interval,
    and CPU/wall per side."""
    timed = interleave(baseline, candidate, rounds, warmup)
    wall = timed.wall
    speedup, low, high = bootstrap_median(wall[:, 0] / wall[:, 1], BOOTSTRAP_SAMPLES)
    return {
        "speedup": speedup,
        "interval": (low, high),
        "baseline_ms": float(np.median(wall[:, 0]) * 1e3),
        "candidate_ms": float(np.median(wall[:, 1]) * 1e3),
        "baseline_cpu_per_wall": timed.cpu_per_wall(0),
        "cpu_per_wall": timed.cpu_per_wall(1),
        "rounds": rounds,
    }


def default_runner(entry, manifest, config: DeviceConfig):
    """``exporters.runners.image_runner``: the runner the sweep times and compares."""
    from mge_harness.exporters.runners import image_runner

    return image_runner(entry, manifest, config)


def default_probe(release_dir, variant_ids, config: DeviceConfig, batches, timeout):
    """``exporters.probe.probe_variants`` of the named config at every batch size."""
    return probe_variants(release_dir, variant_ids, config.name, batches, IMAGE_SIZE, timeout)


def int8_partner(manifest, entry):
    """The int8 variant judged against float ``entry`` (same preprocessing), or None."""
    if entry.quantization is not None:
        return None
    for other in manifest.variants:
        if other.quantization == "int8" and other.preprocessing == entry.preprocessing:
            return other
    return None


def _lite(runner):
    """The Lite runner inside an image runner (HostPreprocessRunner.model), else itself."""
    return getattr(runner, "model", runner)


# --- the sweep ------------------------------------------------------------------------------


@dataclass
class Sweep:
    """One sweep over a release; ``make_runner`` and ``probe`` are swappable for tests."""

    manifest: object  # exporters.manifest.Manifest
    variants: Sequence[str]
    batches: Sequence[int]
    configs: Sequence[DeviceConfig]
    rounds: int = DEFAULT_ROUNDS
    probe_timeout: float = DEFAULT_TIMEOUT_S
    make_runner: Callable = default_runner
    probe: Callable = default_probe
    log: Callable[[str], None] = lambda line: None

    def run(self) -> list[Row]:
        baseline = get_device_config(BASELINE)
        partners = [int8_partner(self.manifest, self.manifest.variant(v)) for v in self.variants]
        int8_ids = [p.id for p in partners if p is not None and p.id not in self.variants]
        probes = {
            config.name: self.probe(
                self.manifest.root,
                list(self.variants) + (int8_ids if config is baseline else []),
                config,
                self.batches,
                self.probe_timeout,
            )
            for config in (baseline, *self.configs)
        }
        rows: list[Row] = []
        for variant_id in self.variants:
            rows += self.sweep_variant(self.manifest.variant(variant_id), probes)
        return rows

    def sweep_variant(self, entry, probes: dict[str, dict[str, ProbeResult]]) -> list[Row]:
        images = equivalence_images(
            EQUIVALENCE_IMAGES, entry.fixed_size or tuple(self.manifest.preprocess.size)
        )
        result = probes[BASELINE][entry.id]
        if not result:  # nothing to compare with: one row per batch, and no recommendation
            self.log(f"{entry.id} {BASELINE} (baseline): {result.status} ({result.reason})")
            return [Row(entry.id, b, BASELINE, result.status, result.reason) for b in self.batches]
        rows = []
        with self.make_runner(entry, self.manifest, get_device_config(BASELINE)) as baseline:
            references = {b: outputs_on(baseline, images, b) for b in self.batches}
            for config in self.configs:
                result = probes[config.name][entry.id]
                if not result:
                    self.log(f"{entry.id} {config.name}: {result.status} ({result.reason})")
                    rows += [
                        Row(entry.id, b, config.name, result.status, result.reason)
                        for b in self.batches
                    ]
                    continue
                rows += self.measure(entry, config, baseline, images, references)
            partner = int8_partner(self.manifest, entry)
            if partner is not None:
                rows += self.measure_int8(entry, partner, baseline, probes[BASELINE][partner.id])
        return rows

    def measure_int8(self, entry, partner, baseline, probed: ProbeResult) -> list[Row]:
        """Rows ``int8``: the int8 variant (default config) timed paired against ``entry`` at
        the default config. Its equivalence is the gate's int8 check, not this sweep's float
        tolerance, so it is reported beside the configs and never recommended."""
        if not probed:
            return [Row(entry.id, b, INT8, probed.status, probed.reason) for b in self.batches]
        reason = f"{partner.id}: judged by the gate's int8 check, never recommended here"
        rows = []
        with self.make_runner(partner, self.manifest, get_device_config(BASELINE)) as quantized:
            for batch in self.batches:
                row = Row(entry.id, batch, INT8, "int8", reason)
                feed = model_feed(entry, self.manifest, image_batch(batch, frame_size(entry)))
                self._time(row, baseline, quantized, feed)  # same preprocessing: same feed
                rows.append(row)
        return rows

    def measure(self, entry, config, baseline, images, references) -> list[Row]:
        rows = []
        try:
            with self.make_runner(entry, self.manifest, config) as candidate:
                for batch in self.batches:
                    rows.append(
                        self.measure_batch(
                            entry, config, batch, baseline, candidate, images, references[batch]
                        )
                    )
        except HarnessError as err:  # probed fine, but failed here: reported, sweep goes on
            done = {row.batch for row in rows}
            rows += [
                Row(entry.id, b, config.name, "error", first_line(err))
                for b in self.batches
                if b not in done
            ]
        return rows

    def measure_batch(self, entry, config, batch, baseline, candidate, images, reference) -> Row:
        result = compare_all(reference, outputs_on(candidate, images, batch))
        row = Row(entry.id, batch, config.name, "ok", equivalence=result.to_dict())
        if not result:
            row.verdict, row.reason = "not equivalent", str(result).splitlines()[0]
            self.log(f"{entry.id} b{batch} {config.name}: not equivalent ({row.reason})")
            return row
        feed = model_feed(entry, self.manifest, image_batch(batch, frame_size(entry)))
        self._time(row, baseline, candidate, feed)
        return row

    def _time(self, row: Row, baseline, candidate, feed) -> None:
        """Paired timing of the two runners' Lite forwards into ``row``, logged."""
        base_lite, cand_lite = _lite(baseline), _lite(candidate)

        def run_baseline():
            base_lite.set_inputs(feed)
            base_lite.run()

        def run_candidate():
            cand_lite.set_inputs(feed)
            cand_lite.run()

        # set_inputs is in both timed calls (the two networks share nothing), and is a copy of
        # a few MB against forwards of milliseconds.
        for key, value in paired_timing(run_baseline, run_candidate, self.rounds).items():
            setattr(row, key, value)
        self.log(
            f"{row.variant} b{row.batch} {row.config}: {row.speedup:.2f}x "
            f"[{row.interval[0]:.2f}, {row.interval[1]:.2f}]"
        )


# --- recommendation, table, file ------------------------------------------------------------


def recommend(rows: Sequence[Row], batches: Sequence[int]) -> str | None:
    """The config with the largest worst-batch speedup among those significantly faster than
    the baseline at every batch size; the baseline when none is, None when the baseline itself
    failed its probe (its rows are the only ones with ``config == BASELINE``)."""
    if any(row.config == BASELINE for row in rows):
        return None
    best, best_score = BASELINE, 1.0
    for name in dict.fromkeys(row.config for row in rows):
        mine = {row.batch: row for row in rows if row.config == name}
        if set(mine) != set(batches) or not all(row.significant for row in mine.values()):
            continue
        score = min(row.speedup for row in mine.values())
        if score > best_score:
            best, best_score = name, score
    return best


def _recommended(name: str | None, config: DeviceConfig | None, chosen: Sequence[Row]):
    """The ``recommended`` record: None when the baseline failed; ``per_batch`` is empty for
    the baseline itself (speedup 1 by definition)."""
    if name is None:
        return None
    return {
        "config": name,
        "options": dict(config.options),
        "threads": config.threads,
        "per_batch": {
            str(row.batch): {
                "speedup": _finite(row.speedup),
                "interval": [_finite(v) for v in row.interval],
                "cpu_per_wall": _finite(row.cpu_per_wall),
                "equivalence": row.equivalence,
            }
            for row in chosen
        },
    }


def document(manifest, rows: Sequence[Row], batches: Sequence[int], configs) -> dict:
    """The ``tuned.json`` document: per variant the recommendation and every row."""
    from mge_harness.bench.machine import cpu_info, machine_info

    by_name = {c.name: c for c in configs}
    variants = {}
    for variant_id in dict.fromkeys(row.variant for row in rows):
        mine = [row for row in rows if row.variant == variant_id]
        name = recommend(mine, batches)
        config = None if name is None else by_name.get(name) or get_device_config(name)
        chosen = [row for row in mine if row.config == name]
        variants[variant_id] = {
            "recommended": _recommended(name, config, chosen),
            "sweep": [row.to_dict() for row in mine],
        }
    return {
        "format_version": 1,
        "model": manifest.model,
        "baseline": BASELINE,
        "batches": list(batches),
        "tolerance": {"atol_scale": ATOL_SCALE, "rtol": 0.0, "cosine_min": COSINE_MIN},
        "machine_info": {**machine_info(), "cpu": cpu_info()},
        "variants": variants,
    }


def table(rows: Sequence[Row]) -> str:
    """Compact text tables (under 100 columns), one per variant and batch size."""
    lines = []
    for key in dict.fromkeys((row.variant, row.batch) for row in rows):
        lines.append(f"{key[0]}  batch {key[1]}  (against {BASELINE})")
        lines.append(f"  {'config':<22} {'verdict':<15} {'speedup [95% interval]':<24} cpu/wall")
        for row in (r for r in rows if (r.variant, r.batch) == key):
            if row.verdict in ("ok", "int8"):
                speed = f"{row.speedup:.2f}x [{row.interval[0]:.2f}, {row.interval[1]:.2f}]"
                load = f"{row.cpu_per_wall:.2f}"
            else:
                speed, load = "-", "-"
            lines.append(f"  {row.config:<22} {row.verdict:<15} {speed:<24} {load}")
        lines.append("")
    return "\n".join(lines)


# --- CLI ------------------------------------------------------------------------------------


def _names(text: str | None, known: Sequence[str], option: str) -> list[str]:
    if text is None:
        return list(known)
    names = list(dict.fromkeys(item.strip() for item in text.split(",")))
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise HarnessError(
            f"{option}: unknown {', '.join(map(repr, unknown)) or 'empty list'}; "
            f"expected some of {', '.join(known)}"
        )
    return names


def select_variants(manifest, text: str | None) -> list[str]:
    """``--variants`` checked against the release; defaults to its external and fused ones."""
    known = [v.id for v in manifest.variants]
    if text is None:  # int8 variants are timed beside their float variant (int8_partner)
        return [
            v.id
            for v in manifest.variants
            if v.preprocessing in DEFAULT_PREPROCESSINGS and v.quantization is None
        ]
    return _names(text, known, "--variants")


def select_configs(text: str | None) -> list[DeviceConfig]:
    """``--configs`` checked against ``default_candidates()``, which it defaults to."""
    names = (
        list(default_candidates())
        if text is None
        else _names(text, default_candidates(), "--configs")
    )
    return [get_device_config(name) for name in names]


def tune(release_dir, variants=None, batches=(1, 4), configs=None, rounds=DEFAULT_ROUNDS,
         probe_timeout=DEFAULT_TIMEOUT_S, log=print, **swaps) -> tuple[Path, list[Row]]:  # fmt: skip
    """Sweeps ``release_dir`` and writes ``tuned.json`` into it; returns its path and the rows.

    ``variants`` and ``configs`` are id / config lists (defaults in the module docstring);
    ``swaps`` may replace ``make_runner`` and ``probe`` of :class:`Sweep` (tests do).
    """
    from mge_harness.exporters.manifest import load_manifest

    if rounds < 3:
        raise HarnessError(f"--rounds: expected at least 3 timed rounds, got {rounds}")
    manifest = load_manifest(release_dir)
    variants = list(variants) if variants else select_variants(manifest, None)
    for variant_id in variants:
        manifest.variant(variant_id)  # one-line error for an unknown id
    configs = [get_device_config(c) for c in (configs or default_candidates())]
    sweep = Sweep(manifest, variants, tuple(batches), configs, rounds, probe_timeout, log=log,
                  **swaps)  # fmt: skip
    rows = sweep.run()
    path = atomic_write_json(
        Path(release_dir) / TUNED_JSON, document(manifest, rows, batches, configs)
    )
    return path, rows


def main(argv: Sequence[str] | None = None) -> int:
    from mge_harness.exporters.quiet import probe_cuda_quietly

    probe_cuda_quietly()
    parser = argparse.ArgumentParser(
        prog="python -m bench.tune", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--release", required=True, help="release folder with manifest.json")
    parser.add_argument(
        "--variants", help="comma-separated variant ids. Defaults to the external and fused ones."
    )
    parser.add_argument("--batches", default="1,4", help="batch sizes. Defaults to 1,4.")
    parser.add_argument(
        "--configs", help="comma-separated candidate CPU configs. Defaults to all but cpu/fastrun."
    )
    parser.add_argument(
        "--rounds", type=int, default=DEFAULT_ROUNDS, help=f"timed rounds. Defaults to "
        f"{DEFAULT_ROUNDS}.",
    )  # fmt: skip
    parser.add_argument(
        "--probe-timeout", type=float, default=DEFAULT_TIMEOUT_S,
        help=f"seconds a config's probe may take per variant. Defaults to {DEFAULT_TIMEOUT_S:g}.",
    )  # fmt: skip
    args = parser.parse_args(argv)
    from mge_harness.exporters.manifest import load_manifest

    release = Path(args.release)
    manifest = load_manifest(release)
    try:
        batches = parse_batch_sizes(args.batches)
    except HarnessError as err:
        raise HarnessError(str(err).replace("--batch-sizes", "--batches", 1)) from None
    path, rows = tune(
        release,
        select_variants(manifest, args.variants),
        batches,
        select_configs(args.configs),
        args.rounds,
        check_timeout(args.probe_timeout),
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(table(rows))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    from mge_harness.exporters.errors import run_cli

    sys.exit(run_cli(main))
