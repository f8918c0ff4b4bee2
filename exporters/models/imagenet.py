"""ImageNet-1k class names for reading classifier outputs (source: exporters/data/README.md)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from mge_harness.exporters.errors import HarnessError

NUM_CLASSES = 1000
CLASSES_FILE = Path(__file__).resolve().parent.parent / "data" / "imagenet_classes.txt"


@lru_cache(maxsize=1)
def _load() -> tuple[str, ...]:
    try:
        names = tuple(CLASSES_FILE.read_text(encoding="utf-8").splitlines())
    except OSError as err:
        raise HarnessError(f"{CLASSES_FILE}: cannot read ImageNet class names ({err})") from None
    if len(names) != NUM_CLASSES or not all(names):
        raise HarnessError(
            f"{CLASSES_FILE}: expected {NUM_CLASSES} non-empty lines, got {len(names)} lines"
        )
    return names


def class_names() -> list[str]:
    """The 1000 class names; ``class_names()[i]`` names logit ``i`` (e.g. 285 "Egyptian cat")."""
    return list(_load())
