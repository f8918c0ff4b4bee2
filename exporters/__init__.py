"""Export MegEngine model variants into release folders, and run them.

``python -m exporters --model resnet18 --out DIR`` writes ``DIR/manifest.json`` and one ``.mge``
per variant. Heavy imports (megengine, megenginelite, cv2) are lazy: importing this package is cheap.
"""

import os
import warnings

# MegEngine's C++ runtime logs CUDA probing chatter ("info: Failed to load CUDA driver ...",
# "debug: ...") on import and every Lite error before we report it in one line. Level 3 keeps
# errors only; set RUNTIME_OVERRIDE_LOG_LEVEL yourself to see more (0 = debug).
os.environ.setdefault("RUNTIME_OVERRIDE_LOG_LEVEL", "3")
# MegEngine imports pkg_resources on start-up, and setuptools warns about that on stderr.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

from mge_harness.exporters.errors import HarnessError  # noqa: E402

__all__ = ["HarnessError"]
