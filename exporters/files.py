"""Checks on user-named files before they are read.

Reading a FIFO blocks until someone writes to it, and reading a folder fails with an OSError
whose text does not say what was expected; both must become one-line ``HarnessError`` s instead.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path

from mge_harness.exporters.errors import HarnessError

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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` so that readers see the old file or the whole new one.

    The file is readable by everyone (0644), as a plain ``open(path, "w")`` would leave it.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp creates 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, document, *, allow_nan: bool = False) -> Path:
    """Writes ``document`` as indented JSON (strict unless ``allow_nan``), atomically, creating
    the folder; returns ``path``."""
    path = Path(path)
    text = json.dumps(document, indent=2, allow_nan=allow_nan) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, text.encode("utf-8"))
    return path
