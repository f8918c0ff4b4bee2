"""What the gate remembers: per-check results, counterexamples, verdicts and ``gate.json``.

Inside a check, :class:`CheckRecorder` keeps the worst passing result and the last input tried.
Hypothesis runs the shrunk (minimal) failing example last, so when a check fails, the last input
is the counterexample; :func:`save_counterexample` writes it as ``.npy``, PNGs and a JSON sidecar.
Each check's outcome travels as a plain dict (``check_record``), which pytest-xdist can ship from
its workers; :func:`gate_document` folds them into the ``gate.json`` document.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mge_harness.equivalence.compare import CompareResult

#: Check verdicts, worst first: a check's verdict is the worst over its setup/call/teardown.
#: ``crashed``/``timeout``: the variant crashed or hung in its probe and was never checked.
VERDICTS = ("crashed", "timeout", "error", "fail", "xpass", "xfail", "pass", "skipped")
#: Variant verdicts that fail the gate.
FAILING = ("crashed", "timeout", "error", "fail", "xpass")


@dataclass
class CheckRecorder:
    """The examples of one check on one variant, as Hypothesis runs them."""

    examples: int = 0
    worst: CompareResult | None = None
    last_images: np.ndarray | None = None
    last_result: CompareResult | None = None
    #: Where the last failure happened ("a batch of shape ..."), set when a comparison fails.
    where: str | None = None

    def start(self, images: np.ndarray) -> None:
        self.examples += 1
        self.last_images, self.last_result = images, None

    def finish(self, result: CompareResult) -> None:
        self.last_result = result
        if self.worst is None or not result.margin >= self.worst.margin:
            self.worst = result


def reproduce_command(npy: Path) -> str:
    """The one command that re-runs a saved counterexample (release, variant, check in the sidecar)."""
    return f"{shlex.quote(sys.executable)} -m equivalence.reproduce {shlex.quote(str(npy))}"


def rerun_command(
    release: Path,
    check: str,
    variant_id: str,
    *,
    seed=None,
    profile: str | None = None,
    tolerances: str | None = None,
    eager: tuple[str, str | None] | None = None,
) -> str:
    """The pytest command that re-runs one check on one variant under the same settings
    (``eager``: the ``--eager`` factory and ``--weights`` file of the run, if any)."""
    words = ["pytest", "equivalence/", "--release", str(release)]
    words += ["-k", f"test_{check} and {variant_id}"]
    if profile:
        words += ["--hypothesis-profile", profile]
    if tolerances:
        words += ["--tolerances", str(tolerances)]
    if eager:
        words += ["--eager", eager[0]] + (["--weights", str(eager[1])] if eager[1] else [])
    if seed is not None:
        words += ["--hypothesis-seed", str(seed)]
    return shlex.join(words)


def counterexample_path(folder: Path, check: str, variant_id: str) -> Path:
    """Where a failing check's input goes: ``<folder>/<variant>/<check>.npy``."""
    return Path(folder) / variant_id / f"{check}.npy"


def failure_text(
    check: str,
    variant_id: str,
    where: str,
    result: CompareResult,
    npy: Path,
    rerun: str,
    notes: Sequence[str] = (),
) -> str:
    """What a failing check says: what failed, the comparison, ``notes`` (the closest
    explanation, the evidence image), how to reproduce it."""
    from mge_harness.equivalence.checks import GATE_CHECKS

    return (
        f"{variant_id} fails the {check} check ({GATE_CHECKS[check].description}) "
        f"on {where}:\n{result}\n"
        + "".join(f"{note}\n" for note in notes)
        + f"counterexample: {npy} (+ PNGs)\n"
        f"reproduce: {reproduce_command(npy)}\n"
        f"      or: {rerun}"
    )


def passing_message(recorder: CheckRecorder | None) -> str:
    """The message of a passing check: how many examples and its worst margin."""
    worst = recorder.worst if recorder else None
    return f"{recorder.examples} examples; worst margin {worst.margin:.3g}" if worst else ""


def save_counterexample(npy: Path, release: Path, images: np.ndarray, meta: dict) -> Path:
    """Writes the uint8 BGR batch to ``npy`` (``<dir>/<variant>/<check>.npy``), one PNG per
    image beside it and a ``.json`` sidecar with the release and ``meta`` (variant, check ...).

    Each file is written atomically, the sidecar last: a run killed meanwhile leaves no
    half-written file for ``equivalence.reproduce`` to read.
    """
    import io

    import cv2

    from mge_harness.exporters.files import atomic_write_bytes

    npy.parent.mkdir(parents=True, exist_ok=True)
    for old in npy.parent.glob(f"{npy.stem}-*.png"):
        old.unlink()
    buffer = io.BytesIO()
    np.save(buffer, images)
    atomic_write_bytes(npy, buffer.getvalue())
    for i, image in enumerate(images):
        png = cv2.imencode(".png", image)[1].tobytes()
        atomic_write_bytes(npy.with_name(f"{npy.stem}-{i}.png"), png)
    sidecar = {"release": str(release), "shape": list(images.shape), **meta}
    sidecar["command"] = reproduce_command(npy)
    write_json_atomic(npy.with_suffix(".json"), sidecar)
    return npy


def write_json_atomic(path: Path, document: Any) -> None:
    """Writes strict JSON so that readers see the old file or the whole new one."""
    from mge_harness.exporters.files import atomic_write_json

    atomic_write_json(path, document)


def check_record(
    recorder: CheckRecorder | None,
    failed: bool,
    counterexample: str | None,
    message: str,
    diagnosis: dict | None = None,
    evidence: str | None = None,
) -> dict[str, Any]:
    """A check's outcome as plain data: the final failing result if it failed, else the worst
    passing one (smallest margin); for a failure against the reference pipeline, its
    ``diagnosis`` (``equivalence.diagnose.Diagnosis.to_dict``) and ``evidence`` image path."""
    recorder = recorder or CheckRecorder()
    result = recorder.last_result if failed else recorder.worst
    metrics = None if result is None else result.to_dict()
    return {
        "examples": recorder.examples,
        "metrics": metrics,
        "tolerance": metrics["tolerance"] if metrics else None,
        "margin": metrics["margin"] if metrics else None,
        "counterexample": counterexample,
        "message": message,
        "diagnosis": diagnosis,
        "evidence": evidence,
    }


def worst_verdict(*verdicts: str) -> str:
    return min(verdicts, key=VERDICTS.index)


def variant_verdict(checks: list[dict]) -> str:
    """A variant's verdict: the worst of its checks' verdicts (order in ``VERDICTS``).

    So a variant whose expected failure was caught (a strict-xfail check that failed) is
    ``xfail`` when nothing else failed, and ``xpass`` (failing the gate) when that check passed.
    """
    return worst_verdict(*(c["verdict"] for c in checks)) if checks else "skipped"


#: Fields of a check entry in gate.json, in order.
CHECK_FIELDS = (
    "check",
    "verdict",
    "examples",
    "metrics",
    "tolerance",
    "margin",
    "counterexample",
    "message",
    "diagnosis",
    "evidence",
)


def gate_document(
    release: str | None,
    model: str | None,
    profile: str,
    records: list[dict],
    status: str = "complete",
    error: str | None = None,
    not_run: list[dict] | None = None,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """The ``gate.json`` document (shape documented in ``equivalence/README.md``).

    ``records`` are check records with ``variant``, ``variant_index``, ``expected_failure`` and
    ``verdict`` besides the ``check_record`` fields; variants keep manifest order. ``status`` is
    "complete" (the default), "partial" (some checks were deselected or did not run: listed in
    ``not_run`` as ``{"variant", "check"}``; never a release verdict, so ``passed`` is false),
    "incomplete" (written before the checks run, so a run that dies leaves a failing document)
    or "error" (the release was refused; ``error`` says why). ``notes`` are headline lines about
    what the verdict does not cover (the eager check without a model source, say).
    """
    by_variant: dict[str, list[dict]] = {}
    for record in sorted(records, key=lambda r: (r["variant_index"], r["order"])):
        by_variant.setdefault(record["variant"], []).append(record)
    variants = [
        {
            "id": variant,
            "verdict": variant_verdict(checks),
            "expected_failure": checks[0]["expected_failure"],
            "checks": [{k: c.get(k) for k in CHECK_FIELDS} for c in checks],
        }
        for variant, checks in by_variant.items()
    ]
    from mge_harness.exporters.version import harness_version

    return {
        "harness_version": harness_version(),
        "release": release,
        "model": model,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hypothesis_profile": profile,
        "status": status,
        "error": error,
        "not_run": list(not_run or []),
        "notes": list(notes or []),
        "passed": status == "complete"
        and bool(variants)
        and all(v["verdict"] not in FAILING for v in variants),
        "variants": variants,
    }
