"""Find and read the files a report is built from.

Three kinds of JSON file are read:

* pytest-benchmark saved runs (``.benchmarks/<machine>/0001_<commit>_<date>.json``): a dict with
  ``machine_info``, ``commit_info``, ``datetime`` and a ``benchmarks`` list.
* not-measured sidecars, for configurations that crashed or timed out (pytest-benchmark drops
  benchmarks that raised, so they never reach its JSON): a dict with a ``not_measured`` list of
  ``extra_info``-shaped entries (``variant``, ``batch``, ``device``, ``mode``, ``status``, ``reason``)
  and optionally ``machine_info`` and ``datetime``. Any file name works; ``*.not-measured.json``
  next to the saved runs is the convention.
* the equivalence gate's ``gate.json`` (see :func:`read_gate`).

Anything else found while scanning a folder is skipped with a one-line reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mge_harness.reports.errors import ReportError

RUN_NUMBER = re.compile(r"^(\d{4})_")


@dataclass(frozen=True)
class SavedRun:
    """One saved file: its benchmark entries plus the provenance that pytest-benchmark stores.

    ``label`` is ``<machine folder>/<run number>`` (e.g. ``Linux-CPython-3.10-64bit/0001``), or
    ``<folder>/<file stem>`` for files that do not follow pytest-benchmark's naming.
    Sidecar entries are stored as benchmark entries without ``stats``.
    """

    path: Path
    label: str
    datetime: str
    machine_info: dict
    commit_info: dict
    benchmarks: tuple[dict, ...]

    def provenance(self) -> dict:
        """Host, versions, CPU, threads and CUDA in one flat dict of strings (None if unknown).

        The bench plugin nests its fields under ``machine_info["megengine"]``; top-level fields
        (as older or foreign runs have them) are read too.
        """
        info = {**self.machine_info, **_dict(self.machine_info.get("megengine"))}
        cpu = info.get("cpu_model") or _dict(info.get("cpu")).get("brand_raw")
        threads = info.get("threads")
        if isinstance(threads, dict):
            threads = f"{threads.get('usable_cpus')} of {threads.get('logical_cpus')} CPUs"
        cuda = info.get("cuda")
        if isinstance(cuda, dict):
            names = [_dict(d).get("name") for d in cuda.get("devices") or []]
            cuda = ", ".join(str(n) for n in names) or "yes"
        commit = self.commit_info.get("id")
        dirty = " (dirty)" if self.commit_info.get("dirty") else ""
        return {
            "host": _text(info.get("node")),
            "commit": f"{str(commit)[:12]}{dirty}" if commit else None,
            "harness_version": _text(info.get("harness_version")),
            "megengine_version": _text(info.get("megengine_version")),
            "lite_version": _text(info.get("lite_version")),
            "cpu": _text(cpu),
            "threads": _text(threads),
            "cuda": _text(cuda),
        }


@dataclass(frozen=True)
class Loaded:
    """The runs that could be read, oldest first, and one line per file that was skipped."""

    runs: tuple[SavedRun, ...]
    skipped: tuple[str, ...]


def read_json(path: Path) -> object:
    """Parse ``path``; ReportError naming the file when it is missing, not a regular file (a
    folder, or a FIFO whose read would block) or not JSON."""
    if Path(path).exists() and not Path(path).is_file():
        raise ReportError(f"{path}: not a regular file; expected a JSON file")
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: not valid JSON ({exc})") from None


def run_label(path: Path) -> str:
    """``<parent folder>/<run number>``, the short name a saved run goes by in tables."""
    match = RUN_NUMBER.match(path.name)
    return f"{path.parent.name}/{match.group(1) if match else path.stem}"


def read_run(path: Path) -> SavedRun:
    """Read one saved run or sidecar; ReportError when the file is neither."""
    data = read_json(path)
    if isinstance(data, dict) and isinstance(data.get("not_measured"), list):
        entries = [_sidecar_entry(entry) for entry in data["not_measured"]]
    elif isinstance(data, dict) and isinstance(data.get("benchmarks"), list):
        entries = data["benchmarks"]
    else:
        raise ReportError(
            f"{path}: not a pytest-benchmark run (expected a 'benchmarks' list) "
            "nor a not-measured sidecar (expected a 'not_measured' list)"
        )
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ReportError(f"{path}: every benchmark entry must be an object with a 'name'")
    return SavedRun(
        path=Path(path),
        label=run_label(Path(path)),
        datetime=str(data.get("datetime") or ""),
        machine_info=_dict(data.get("machine_info")),
        commit_info=_dict(data.get("commit_info")),
        benchmarks=tuple(entries),
    )


def _sidecar_entry(entry: object) -> object:
    if not isinstance(entry, dict):
        return entry
    name = entry.get("name") or entry.get("variant")
    return {"name": name, "fullname": entry.get("fullname", name), "extra_info": entry}


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def discover(paths: Iterable[Path | str]) -> list[Path]:
    """Every JSON file given or found (recursively) in the given folders, in a stable order."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(p for p in path.rglob("*.json") if p.is_file()))
        elif path.exists():
            raise ReportError(f"{path}: neither a file nor a folder of saved benchmark runs")
        else:
            raise ReportError(
                f"{path}: no such file or folder of saved benchmark runs "
                "(save some with 'pytest bench --benchmark-autosave' or pass --benchmarks PATH)"
            )
    return found


def load_runs(paths: Iterable[Path | str]) -> Loaded:
    """Read every run found under ``paths``, skipping unreadable or foreign files with a reason.

    ReportError when nothing readable is found, because an empty report hides the real problem.
    """
    paths = list(paths)
    runs, skipped = [], []
    for path in discover(paths):
        try:
            runs.append(read_run(path))
        except ReportError as exc:
            skipped.append(f"skipped {exc}")
    if not runs:
        where = ", ".join(str(p) for p in paths) or "(no paths)"
        raise ReportError(
            f"no saved benchmark runs found in {where} "
            "(save some with 'pytest bench --benchmark-autosave' or pass --benchmarks PATH)"
        )
    runs.sort(key=lambda run: (run.datetime, str(run.path)))
    return Loaded(runs=tuple(runs), skipped=tuple(skipped))


def find_run(ref: str, storage: Sequence[Path | str]) -> Path:
    """Resolve a saved-run reference for ``--compare``.

    ``ref`` is a file path, a run number such as ``0001`` (searched in every machine folder of
    ``storage``) or ``<machine folder>/0001`` when the number exists on several machines.
    """
    if Path(ref).is_file():
        return Path(ref)
    candidates = [path for path in discover(p for p in storage if Path(p).exists())]
    matches = [path for path in candidates if _matches(path, ref)]
    if len(matches) == 1:
        return matches[0]
    where = ", ".join(str(p) for p in storage)
    if not matches:
        known = sorted({run_label(p) for p in candidates if RUN_NUMBER.match(p.name)})
        listing = ", ".join(known) if known else "none"
        raise ReportError(f"no saved run {ref!r} in {where} (saved runs: {listing})")
    names = ", ".join(run_label(p) for p in matches)
    raise ReportError(f"{ref!r} matches {len(matches)} saved runs ({names}); pass MACHINE/{ref}")


def _matches(path: Path, ref: str) -> bool:
    folder, _, name = ref.rpartition("/")
    if folder and folder != path.parent.name:
        return False
    return path.stem == name or path.name.startswith(f"{name}_")


def read_gate(path: Path | str) -> dict:
    """Read ``gate.json``; ReportError when it is missing, not JSON or has no ``variants`` list.

    Every other field is optional: the table builder tolerates missing verdicts and metrics.
    """
    data = read_json(Path(path))
    if not isinstance(data, dict) or not isinstance(data.get("variants"), list):
        raise ReportError(f"{path}: not a gate result (expected an object with a 'variants' list)")
    return data
