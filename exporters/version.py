"""The harness's version, as recorded in gate.json, saved benchmarks and reports."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

#: The distribution name in pyproject.toml.
DISTRIBUTION = "mge-release-harness"

_PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


@cache
def harness_version() -> str:
    """The installed distribution's version; in a source checkout that is not installed (or is
    installed from another checkout), the version in its ``pyproject.toml``. Defaults to
    ``"unknown"`` when neither is found."""
    checkout = _checkout_version()
    if checkout is not None:
        return checkout
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"


def source_checkout() -> Path | None:
    """The repository root when this code runs from a source checkout of this project (the
    package's parent holds a ``pyproject.toml`` naming it), else None."""
    return _PYPROJECT.parent if _checkout_version() is not None else None


@cache
def _checkout_version() -> str | None:
    try:
        text = _PYPROJECT.read_text(encoding="utf-8")
    except OSError:
        return None
    project = text.partition("[project]")[2].partition("\n[")[0]
    name = re.search(r'^name\s*=\s*"([^"]+)"', project, re.MULTILINE)
    if name is None or name.group(1) != DISTRIBUTION:
        return None
    found = re.search(r'^version\s*=\s*"([^"]+)"', project, re.MULTILINE)
    return found.group(1) if found else "unknown"
