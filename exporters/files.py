"""Checks on user-named files before they are read.

Reading a FIFO blocks until someone writes to it, and reading a folder fails with an OSError
whose text does not say what was expected; both must become one-line ``HarnessError`` s instead.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from exporters.errors import HarnessError

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def special_kind(path: Path) -> str | None:
    """What ``path`` is when it exists but is not a regular file ("a folder", "a FIFO ..."),
    else None (a regular file, or nothing there: callers report a missing file their own way)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return next((kind for test, kind in _KINDS if test(mode)), None)


def check_regular(path: Path, expected: str) -> None:
    """HarnessError ``<path>: is a folder; expected <expected>`` unless ``path`` is a regular
    file or missing."""
    kind = special_kind(Path(path))
    if kind:
        raise HarnessError(f"{path}: is {kind}; expected {expected}")
