"""A model's outputs: flattened to named tensors, the same way for the dump and the eager module.

A ``forward`` may return one tensor, a tuple or list of tensors, or a dict of them. MegEngine's
``trace.dump`` takes only a flat list of tensors with one name each, so the exporter flattens:

* one tensor: ``logits`` (the harness's name since the beginning),
* a tuple or list: ``out0``, ``out1``, ... in order,
* a dict: its keys, in the dict's order (keys must be names: letters, digits, ``_ . -``).

The eager runner flattens the eager module's return value with the same function, so every
output is compared by name. The manifest lists the outputs with a ``kind``: ``logits`` (class
scores: top-1 and photo label checks apply) or ``tensor`` (anything else: boxes, features). By
default only a single output of rank 2 is ``logits``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mge_harness.exporters.errors import HarnessError
from mge_harness.exporters.schema import check_keys

SINGLE = "logits"
KINDS = ("logits", "tensor")
_NAME = re.compile(r"^[A-Za-z_][\w.\-]*$")


@dataclass(frozen=True)
class OutputSpec:
    """One graph output: its name and kind (``logits`` or ``tensor``)."""

    name: str
    kind: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "kind": self.kind}


def flatten_outputs(value: Any, where: str) -> dict[str, Any]:
    """``{name: tensor}`` of what a forward returned (see the module docstring); HarnessError
    naming ``where`` for anything else (nested containers, non-tensors, bad dict keys)."""
    from megengine import Tensor

    if isinstance(value, Tensor):
        return {SINGLE: value}
    if isinstance(value, (tuple, list)):
        items = [(f"out{i}", v) for i, v in enumerate(value)]
    elif isinstance(value, dict):
        for key in value:
            if not isinstance(key, str) or not _NAME.match(key):
                raise HarnessError(
                    f"{where}: forward returned a dict with key {key!r}; output names must be "
                    "strings of letters, digits, '_', '.' or '-'"
                )
        items = list(value.items())
    else:
        raise HarnessError(
            f"{where}: forward returned {type(value).__name__}; expected a tensor, or a tuple, "
            "list or dict of tensors"
        )
    if not items:
        raise HarnessError(f"{where}: forward returned an empty {type(value).__name__}")
    for name, item in items:
        if not isinstance(item, Tensor):
            raise HarnessError(
                f"{where}: output {name!r} is {type(item).__name__}, not a tensor (nested "
                "containers are not supported: return a flat tuple or dict of tensors)"
            )
    return dict(items)


def default_kinds(shapes: dict[str, tuple[int, ...]]) -> tuple[OutputSpec, ...]:
    """The outputs' default kinds: ``logits`` for a single rank-2 output, else ``tensor``."""
    single = len(shapes) == 1 and len(next(iter(shapes.values()))) == 2
    return tuple(OutputSpec(n, "logits" if single else "tensor") for n in shapes)


def parse_outputs(item: Any, source: str) -> tuple[OutputSpec, ...] | None:
    """The manifest's ``outputs`` list (None when absent: as the graph has them, by default
    kind)."""
    if item is None:
        return None
    where = f"{source}: outputs"
    if not isinstance(item, list) or not item:
        raise HarnessError(f"{where} must be a non-empty list of {{'name', 'kind'}}")
    specs = []
    for i, entry in enumerate(item):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise HarnessError(f"{where}[{i}] must be an object with a 'name' string")
        check_keys(entry, "output", f"{where}[{i}]")
        kind = entry.get("kind", "tensor")
        if kind not in KINDS:
            raise HarnessError(f"{where}[{i}].kind must be one of {KINDS}, got {kind!r}")
        specs.append(OutputSpec(entry["name"], kind))
    names = [s.name for s in specs]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise HarnessError(f"{where}: output {duplicate!r} appears twice")
    return tuple(specs)


def logits_names(specs: tuple[OutputSpec, ...] | None, shapes: dict[str, tuple]) -> set[str]:
    """The names of the outputs that are class scores: by the manifest's kinds, else default."""
    specs = specs if specs is not None else default_kinds(shapes)
    return {s.name for s in specs if s.kind == "logits"}
