"""Crash and hang isolation for the gate: variants are probed in a child process first.

Before the gate loads a release in-process, every variant is loaded and run once in a child
(``exporters.probe``). A variant that crashed the child (a signal, e.g. SIGSEGV) or hung past
``--probe-timeout`` is never loaded in-process: its checks, and the checks of other variants that
need it (what a check record's ``needs`` names: the reference pipeline's variant, a fuse check's
fusion-off twin), fail in setup with the probe's reason and the verdict
``crashed``/``timeout``/``error``, so the gate fails closed while every other variant is still
checked. A probe that merely errored (a file Lite cannot load, an input that is not as declared)
is left to the in-process validation, which names the problem in one line and stops the session.

Under pytest-xdist the controller probes once and ships the results to its workers
(``to_workerinput`` / ``from_workerinput``), so no release is probed twice.
"""

from __future__ import annotations

from mge_harness.equivalence.checks import GATE_CHECKS
from mge_harness.exporters.manifest import Manifest, VariantEntry
from mge_harness.exporters.probe import ProbeResult, probe_variants

#: Probe statuses that keep a variant out of the gate's process.
BLOCKING = ("crashed", "timeout")

#: Batch sizes a gate probe runs: a single image and a batch, like the checks' image batches.
PROBE_BATCH_SIZES = (1, 4)

#: The key of the probe results in an xdist worker's ``workerinput``.
WORKERINPUT_KEY = "gate_probes"


def probe_release(manifest: Manifest, timeout: float) -> dict[str, ProbeResult]:
    """The variants of ``manifest`` that failed, crashed or hung in a child process, with the
    reason (those in ``BLOCKING`` are never loaded in-process)."""
    results = probe_variants(
        manifest.root,
        [entry.id for entry in manifest.variants],
        batch_sizes=PROBE_BATCH_SIZES,
        timeout=timeout,
    )
    return {vid: result for vid, result in results.items() if not result}


def probe_frames(entry: VariantEntry) -> str:
    """What a gate probe feeds ``entry``, in words."""
    from mge_harness.exporters.probe import DEFAULT_IMAGE_SIZE

    height, width = entry.fixed_size or DEFAULT_IMAGE_SIZE
    sizes = " and ".join(map(str, PROBE_BATCH_SIZES))
    return f"batches of {sizes} uint8 images of {height}x{width}"


def to_workerinput(blocked: dict[str, ProbeResult]) -> dict[str, list]:
    """Probe results as plain data for an xdist worker's ``workerinput``."""
    return {vid: [r.status, r.reason, r.seconds] for vid, r in blocked.items()}


def from_workerinput(workerinput: dict) -> dict[str, ProbeResult] | None:
    """The probe results a controller shipped to this worker, or None when it shipped none."""
    shipped = workerinput.get(WORKERINPUT_KEY)
    if shipped is None:
        return None
    return {vid: ProbeResult(*fields) for vid, fields in shipped.items()}


def session_probes(config, manifest: Manifest, timeout: float) -> dict[str, ProbeResult]:
    """The blocked variants of this session: shipped by the xdist controller, else probed."""
    shipped = from_workerinput(getattr(config, "workerinput", {}))
    return shipped if shipped is not None else probe_release(manifest, timeout)


def needed_variants(check: str, manifest: Manifest, entry: VariantEntry) -> list[VariantEntry]:
    """The variants ``check`` loads for ``entry`` (its record's ``needed_variants``).

    A check that loads another variant is also stopped by ``RunnerPool``, which refuses to load
    a blocked variant: this list only lets such checks fail in setup, with a precise verdict.
    """
    return GATE_CHECKS[check].needed_variants(manifest, entry)


def blocked_check(
    check: str, manifest: Manifest, entry: VariantEntry, blocked: dict[str, ProbeResult]
) -> tuple[str, str] | None:
    """(verdict, reason) when ``check`` on ``entry`` cannot run because a variant it needs was
    blocked by its probe, else None. The verdict is the probe's status for the variant's own
    failure and ``error`` when another variant it needs is at fault."""
    for other in needed_variants(check, manifest, entry):
        result = blocked.get(other.id)
        if result is None:
            continue
        if other.id == entry.id:
            return result.status, f"{entry.id} {result.reason}; it was not loaded in the gate"
        return "error", f"needs {other.id}, which {result.reason}; not checked"
    return None
