"""Measure the noise between correct variants: where the default tolerances come from.

``python -m equivalence.noise [--release DIR | --model NAME] [--examples N] [--checks LIST]``
runs every applicable check on every variant not marked ``expected_failure``, with Hypothesis
steering towards the largest error (``target()`` on the smallest passing atol and on
``1 - cosine``), and prints a Markdown table of the worst values seen and the margin left under
the current tolerances (``--tolerances FILE`` or the defaults). Nothing is asserted: a negative
margin means the tolerance is too tight for what correct variants do.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field

from mge_harness.exporters.errors import HarnessError, run_cli


@dataclass
class Worst:
    """The worst values over the examples of one check on one variant."""

    examples: int = 0
    max_abs: float = 0.0
    min_atol: float = 0.0
    one_minus_cosine: float = 0.0
    margin: float = math.inf
    shape: tuple = field(default=())

    def update(self, result, shape: tuple) -> None:
        self.examples += 1
        if result.min_atol > self.min_atol:
            self.shape = shape
        self.max_abs = max(self.max_abs, result.max_abs)
        self.min_atol = max(self.min_atol, result.min_atol)
        self.one_minus_cosine = max(self.one_minus_cosine, 1.0 - result.cosine)
        self.margin = min(self.margin, result.margin)


def measure(gate, check: str, variant_id: str, examples: int) -> Worst:
    """Runs ``check`` on ``variant_id`` for ``examples`` Hypothesis examples, no shrinking (a
    check with fixed inputs runs each of them once instead)."""
    from hypothesis import HealthCheck, Phase, given, settings, target

    from mge_harness.equivalence.checks import GATE_CHECKS
    from mge_harness.equivalence.strategies import image_batches

    worst = Worst()
    kind = GATE_CHECKS[check]
    if kind.fixed is not None:  # its own inputs (the photo set): each batch once, no search
        for batch in kind.fixed():
            worst.update(gate.run(check, variant_id, batch.images), batch.images.shape)
        return worst
    strategy = image_batches(
        min_batch=GATE_CHECKS[check].min_batch, target=gate.manifest.preprocess.size
    )

    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[Phase.generate, Phase.target],
        suppress_health_check=list(HealthCheck),
    )
    @given(images=strategy)
    def run(images):
        result = gate.run(check, variant_id, images)
        if result.status in ("shape", "dtype", "nonfinite"):
            raise AssertionError(f"{variant_id} {check}: {result}")
        target(result.min_atol, label="min atol")
        target(1.0 - result.cosine, label="1 - cosine")
        worst.update(result, images.shape)

    run()
    return worst


def applicable(gate, checks: list[str]):
    """(check, variant id) pairs that run on this machine, expected failures left out."""
    from mge_harness.equivalence.checks import runtime_skip_reason, skip_reason

    for check in checks:
        if runtime_skip_reason(check):
            continue
        for entry in gate.manifest.variants:
            if not entry.expected_failure and not skip_reason(check, gate.manifest, entry):
                yield check, entry.id


def table_rows(gate, check: str, variant_id: str, worst: Worst) -> str:
    tol = gate.tolerances.lookup(check, variant_id)
    return (
        f"| {check} | {variant_id} | {worst.examples} | {worst.max_abs:.3g} | "
        f"{worst.min_atol:.3g} @ rtol {tol.rtol:g} | {worst.one_minus_cosine:.3g} | "
        f"{tol.atol:g} / {tol.rtol:g} / {tol.cosine_min:g} | {worst.margin:.3f} | "
        f"{tuple(worst.shape)} |"
    )


def main(argv=None) -> int:
    from mge_harness.exporters.quiet import probe_cuda_quietly

    probe_cuda_quietly()
    from mge_harness.equivalence.gate import Gate
    from mge_harness.equivalence.tolerances import CHECKS, load_tolerances
    from mge_harness.exporters.manifest import load_manifest
    from mge_harness.exporters.release import resolve_release

    parser = argparse.ArgumentParser(prog="python -m equivalence.noise", description=__doc__)
    parser.add_argument("--release", metavar="DIR", help="release folder (default: built-in)")
    parser.add_argument("--model", default="resnet18", help="built-in model without --release")
    parser.add_argument("--examples", type=int, default=100, help="examples per check (100)")
    parser.add_argument("--checks", default=",".join(CHECKS), help="comma-separated checks")
    parser.add_argument("--tolerances", metavar="FILE", help="tolerance file (default: built-in)")
    args = parser.parse_args(argv)
    checks = [c.strip() for c in args.checks.split(",") if c.strip()]
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise HarnessError(f"--checks: unknown check(s) {unknown}; known: {', '.join(CHECKS)}")
    gate = Gate(
        load_manifest(resolve_release(args.release, args.model)), load_tolerances(args.tolerances)
    )
    print(
        "| check | variant | examples | max abs | smallest passing atol | 1 - cosine "
        "| tolerance atol / rtol / cosine_min | margin | worst batch shape |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    try:
        for check, variant_id in applicable(gate, checks):
            worst = measure(gate, check, variant_id, args.examples)
            print(table_rows(gate, check, variant_id, worst), flush=True)
    finally:
        gate.close()
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
