"""Which tolerance applies to which check: defaults per check kind, overridable from a file.

The defaults are the check records' own (:mod:`equivalence.checks`, with the noise table
they were measured from).
A file passed with ``--tolerances FILE`` (``.json`` or ``.toml``) overrides them per check kind
and per variant; a partial entry keeps the fields it does not name::

    [checks.reference]          # every variant against the reference pipeline
    atol = 0.05

    [variants."resnet18.fused.cbn-on".reference]
    rtol = 0.02

The JSON form is the same tree: ``{"checks": {...}, "variants": {"<id>": {"<check>": {...}}}}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mge_harness.equivalence.checks import GATE_CHECKS
from mge_harness.equivalence.compare import Tolerance
from mge_harness.exporters.errors import HarnessError
from mge_harness.exporters.files import check_regular

#: The check kinds of the gate, and what each one compares (from the check registry).
CHECKS: Mapping[str, str] = {name: check.description for name, check in GATE_CHECKS.items()}

#: Default tolerances, measured between correct variants: the table is in
#: :mod:`equivalence.checks`, beside the records that carry them.
DEFAULT_TOLERANCES: Mapping[str, Tolerance] = {
    name: check.tolerance for name, check in GATE_CHECKS.items()
}


@dataclass(frozen=True)
class ToleranceTable:
    """Tolerances per check kind, with per-variant overrides. Defaults to the measured defaults."""

    checks: Mapping[str, Tolerance] = field(default_factory=lambda: dict(DEFAULT_TOLERANCES))
    variants: Mapping[str, Mapping[str, Tolerance]] = field(default_factory=dict)
    source: str = "built-in defaults"

    def lookup(self, check: str, variant: str | None = None) -> Tolerance:
        """The tolerance for ``check`` on ``variant``: its override if any, else the check's."""
        if check not in self.checks:
            raise KeyError(f"unknown check {check!r}; known: {', '.join(self.checks)}")
        return self.variants.get(variant or "", {}).get(check, self.checks[check])

    def check_variants(self, known: set[str]) -> None:
        """Raises HarnessError when an override names a variant that is not in ``known``."""
        unknown = sorted(set(self.variants) - set(known))
        if unknown:
            raise HarnessError(
                f"{self.source}: no variant {', '.join(map(repr, unknown))} in this release; "
                f"known variants: {', '.join(sorted(known))}"
            )

    @classmethod
    def from_dict(cls, data: Any, source: str = "tolerances") -> ToleranceTable:
        """Builds a table from ``{"checks": {...}, "variants": {...}}`` over the defaults."""
        if not isinstance(data, Mapping) or set(data) - {"checks", "variants"}:
            raise HarnessError(
                f"{source}: expected only the tables 'checks' and 'variants', got {_keys(data)}"
            )
        checks = dict(DEFAULT_TOLERANCES)
        checks.update(_check_table(data.get("checks", {}), checks, source, "checks"))
        variants = {}
        for variant, table in _mapping(data.get("variants", {}), f"{source}: 'variants'").items():
            variants[variant] = _check_table(table, checks, source, f"variants.{variant}")
        return cls(checks=checks, variants=variants, source=source)


def _check_table(data: Any, base: Mapping[str, Tolerance], source: str, where: str) -> dict:
    table = _mapping(data, f"{source}: '{where}'")
    unknown = sorted(set(table) - set(CHECKS))
    if unknown:
        raise HarnessError(
            f"{source}: '{where}' names unknown check(s) {', '.join(map(repr, unknown))}; "
            f"known checks: {', '.join(CHECKS)}"
        )
    return {
        check: Tolerance.from_dict(value, base=base[check], source=f"{source}: '{where}.{check}'")
        for check, value in table.items()
    }


def _mapping(data: Any, name: str) -> Mapping:
    if not isinstance(data, Mapping):
        raise HarnessError(f"{name} must be a table (object), got {data!r}")
    return data


def _keys(data: Any) -> str:
    return repr(sorted(data)) if isinstance(data, Mapping) else repr(data)


def load_tolerances(path: str | Path | None) -> ToleranceTable:
    """Reads a ``.json`` or ``.toml`` tolerance file; ``None`` gives the defaults."""
    if path is None:
        return ToleranceTable()
    path = Path(path)
    if path.suffix not in (".json", ".toml"):
        raise HarnessError(f"{path}: tolerance file must end in .json or .toml")
    check_regular(path, "a tolerance file")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise HarnessError(f"{path}: cannot read tolerance file ({err.strerror})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else _toml_loads(text)
    except ValueError as err:
        raise HarnessError(f"{path}: not valid {path.suffix[1:].upper()} ({err})") from None
    return ToleranceTable.from_dict(data, source=str(path))


def _toml_loads(text: str) -> Any:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11: tomli, which pytest itself depends on there
        import tomli as tomllib
    return tomllib.loads(text)
