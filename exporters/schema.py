"""The manifest's JSON Schema (``manifest.schema.json``): the one record of which keys each
manifest object may hold.

Users validate hand-written manifests against the schema in their editors; the loader reads
the same file for its unknown-key check, so a key is known to both or to neither. The loader's
other checks stay its own, with one-line messages (a schema validator's are not).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path

from mge_harness.exporters.errors import HarnessError

SCHEMA = Path(__file__).with_name("manifest.schema.json")
#: The name of the top-level object among the schema's objects (the others are ``$defs``).
TOP = "manifest"


def load_schema() -> dict:
    """The manifest's JSON Schema, as a dict (draft 2020-12)."""
    return json.loads(SCHEMA.read_text(encoding="utf-8"))


@cache
def known_keys(kind: str) -> tuple[str, ...]:
    """The keys a manifest object of ``kind`` may hold: ``manifest`` (the top level) or a
    ``$defs`` name (``variant``, ``input``, ``preprocess``, ``source``, ``weights``, ``output``)."""
    schema = load_schema()
    node = schema if kind == TOP else schema["$defs"][kind]
    return tuple(node["properties"])


def check_keys(item: Mapping, kind: str, where: str) -> None:
    """HarnessError naming the first key of ``item`` that a ``kind`` object does not know, and
    the nearest known one: ``<where> has unknown key 'expected_falure'; did you mean
    'expected_failure'?``."""
    known = known_keys(kind)
    for key in item:
        if key in known:
            continue
        close = difflib.get_close_matches(str(key), known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
        raise HarnessError(f"{where} has unknown key {key!r}; {hint}")
