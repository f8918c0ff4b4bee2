"""Keep MegEngine's start-up chatter off the user's terminal.

On a machine without a GPU, MegEngine's CUDA stub prints nine ``info:``/``debug:`` lines to
stderr the first time anything probes for CUDA, unconditionally (no log level covers it).
Entry points call ``probe_cuda_quietly()`` first: it triggers that probe once with file
descriptor 2 pointed at /dev/null, so a bad input still ends in exactly one ``error:`` line.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache


@lru_cache(maxsize=1)
def probe_cuda_quietly() -> int:
    """Imports MegEngine and Lite and counts CUDA devices with stderr silenced."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        import megengine
        import megenginelite as lite

        megengine.get_device_count("gpu")
        megengine.tensor([0.0]).numpy()  # the first tensor probes the driver once more
        # Lite asks the driver again (with its own three lines); its count is the one we use.
        return int(lite.LiteGlobal.get_device_count(lite.LiteDeviceType.LITE_CUDA))
    finally:
        os.dup2(saved, 2)
        os.close(saved)
