"""Activated runners shared by consecutive benchmarks, so each .mge loads once per device config.

Cases run grouped by (variant, device config) (see ``bench.cases``), so only the most recent few
networks are kept alive; older ones are deactivated to bound memory on the full grid.
"""

from __future__ import annotations

from collections import OrderedDict


class LoadedRunners:
    """``image_runner``s keyed by (variant id, device config), activated on first use.

    ``images(...)`` is the raw-image runner (host OpenCV + Lite for external variants, Lite alone
    for fused ones); ``lite(...)`` is the Lite runner inside it, for model-only timing. Keeps at
    most ``keep`` networks loaded. Defaults to 2.
    """

    def __init__(self, keep: int = 2):
        self.keep = keep
        self._active: OrderedDict[tuple[str, str], object] = OrderedDict()
        self.loads = 0

    def images(self, entry, manifest, device: str):
        """The activated raw-image runner of ``entry`` on ``device``."""
        key = (entry.id, device)
        if key in self._active:
            self._active.move_to_end(key)
            return self._active[key]
        from mge_harness.exporters.runners import image_runner

        runner = image_runner(entry, manifest, device)
        runner.activate()
        self.loads += 1
        self._active[key] = runner
        while len(self._active) > self.keep:
            self._active.popitem(last=False)[1].deactivate()
        return runner

    def lite(self, entry, manifest, device: str):
        """The activated ``LiteRunner`` of ``entry`` on ``device`` (shared with ``images``)."""
        runner = self.images(entry, manifest, device)
        return getattr(runner, "model", runner)

    def close(self) -> None:
        """Deactivates every runner still loaded."""
        while self._active:
            self._active.popitem(last=False)[1].deactivate()
