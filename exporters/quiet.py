"""Keep MegEngine's start-up chatter off the user's terminal.

On a machine without a GPU, MegEngine's CUDA stub prints nine ``info:``/``debug:`` lines to
stderr the first time anything probes for CUDA, unconditionally (no log level covers it).
Entry points call ``probe_cuda_quietly()`` first: it triggers that probe once with file
descriptor 2 captured and dropped, so a bad input still ends in exactly one ``error:`` line.
Image decoders (libpng, OpenCV's log) are captured the same way (``captured_stderr``).
The eager tensor that probe makes starts MegEngine's event poller thread, which it then moves
out of the way of real work (``exporters.poller``).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from mge_harness.exporters.deferred import defer_megengine_downloads
from mge_harness.exporters.poller import idle_megengine_poller


@contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Captures what is written to file descriptor 2 (C libraries too) inside the block; the
    yielded list holds the captured lines once the block ends."""
    sys.stderr.flush()
    lines: list[str] = []
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield lines
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                sink.seek(0)
                lines.extend(sink.read().decode("utf-8", "replace").splitlines())
    finally:
        os.close(saved)


@lru_cache(maxsize=1)
def probe_cuda_quietly() -> int:
    """Imports MegEngine (its unused download stack deferred, ``exporters.deferred``) and Lite
    and counts CUDA devices with stderr silenced."""
    defer_megengine_downloads()
    with captured_stderr():
        import megengine
        import megenginelite as lite

        megengine.get_device_count("gpu")
        megengine.tensor([0.0]).numpy()  # the first tensor probes the driver once more
        idle_megengine_poller(wait=1.0)  # that tensor started the poller: idle cores only
        # Lite asks the driver again (with its own three lines); its count is the one we use.
        return int(lite.LiteGlobal.get_device_count(lite.LiteDeviceType.LITE_CUDA))
