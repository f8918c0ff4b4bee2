"""Per-session benchmark state: the grid, probe results, loaded runners, not-measured rows.

Cases that cannot be measured (device config unavailable, probe crashed or timed out, timing
raised) are skipped or fail in pytest, and pytest-benchmark saves nothing for them. So each one is
also kept as an ``extra_info``-shaped row with ``status`` != "ok" and a ``reason``, and written to
a not-measured sidecar beside the saved run (see ``write_not_measured``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from mge_harness.bench.inputs import IMAGE_SIZE
from mge_harness.bench.loaded import LoadedRunners
from mge_harness.bench.timing import case_info
from mge_harness.exporters.files import atomic_write_json
from mge_harness.exporters.probe import DEFAULT_TIMEOUT_S, ProbeResult, probe_variants

#: Suffix the reports look for next to saved runs.
SIDECAR_SUFFIX = ".not-measured.json"


@dataclass
class BenchState:
    """Everything the benchmark tests share within one pytest session."""

    grid: object  # bench.grid.Grid
    probe_timeout: float = DEFAULT_TIMEOUT_S
    runners: LoadedRunners = field(default_factory=LoadedRunners)
    probes: dict[tuple[str, str], ProbeResult] = field(default_factory=dict)
    not_measured: list[dict] = field(default_factory=list)
    saved_run: dict = field(default_factory=dict)

    def probe(self, case, release_dir) -> ProbeResult:
        """Probes ``case``'s (variant, device config) in a child process, once per session."""
        if case.key not in self.probes:
            variant_id = case.variant.id
            self.probes[case.key] = probe_variants(
                release_dir,
                [variant_id],
                case.device,
                self.grid.batch_sizes,
                IMAGE_SIZE,
                self.probe_timeout,
            )[variant_id]
        return self.probes[case.key]

    def blocker(self, case, release_dir) -> tuple[str, str] | None:
        """(status, reason) when ``case`` cannot be measured here, else None."""
        from mge_harness.exporters.devices import get_device_config, unavailable_reason

        reason = unavailable_reason(get_device_config(case.device))
        if reason:
            return "skipped", reason
        result = self.probe(case, release_dir)
        return None if result else (result.status, result.reason)

    def record(self, case, manifest, node, status: str, reason: str) -> None:
        """Keeps a not-measured row for ``case`` (the pytest item ``node``)."""
        row = case_info(case, manifest)
        row.update(
            status=status, reason=reason, name=node.name, fullname=node.nodeid, group=case.group
        )
        self.not_measured.append(row)


def sidecar_document(rows: list[dict], saved_run: dict, machine_info: dict | None) -> dict:
    """The sidecar JSON: rows plus the saved run's ``datetime``/``machine_info`` to pair with it."""
    return {
        "datetime": saved_run.get("datetime") or datetime.now(timezone.utc).isoformat(),
        "machine_info": saved_run.get("machine_info") or machine_info or {},
        "not_measured": rows,
    }


def sidecar_name(stamp: str) -> str:
    """``bench-<stamp>.not-measured.json``; no leading run number, so pytest-benchmark ignores it."""
    compact = "".join(ch for ch in stamp[:19] if ch.isdigit())
    return f"bench-{compact[:8]}_{compact[8:]}{SIDECAR_SUFFIX}"


def write_not_measured(folder: Path, document: dict) -> Path:
    """Writes the sidecar into ``folder`` (the machine folder of the benchmark storage), atomically:
    a run killed while writing it leaves no half-written file for the reports to read."""
    path = Path(folder) / sidecar_name(document["datetime"])
    return atomic_write_json(path, document, allow_nan=True)
