"""Export MegEngine model variants into release folders, and run them.

``python -m exporters --model resnet18 --out DIR`` writes ``DIR/manifest.json`` and one ``.mge``
per variant. Heavy imports (megengine, megenginelite, cv2) are lazy: importing this package is cheap.
"""

from exporters.errors import HarnessError

__all__ = ["HarnessError"]
