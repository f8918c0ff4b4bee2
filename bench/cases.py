"""Benchmark cases: one per variant x batch size x device config x timing mode.

Timing modes:

* ``model``: the input is already in the Lite tensor; only ``runner.run()`` (forward + wait) is timed.
* ``e2e``: raw uint8 BGR frames in, logits out: host OpenCV preprocessing (external
  variants) + set inputs + forward + fetch. The fair fused-vs-external comparison. One case
  per frame size of the grid (``Grid.frame_sizes``: 480x640, plus 1080x1920 on the full grid);
  a variant whose graph takes one fixed size gets that size only. Frames of the default size
  (``bench.inputs.IMAGE_SIZE``) and fixed-size graphs keep the plain id and group, so saved runs
  stay comparable; other grid sizes add ``-HxW`` to the id and ``@HxW`` to the group.
* ``raw``: a bare ``LiteNetwork`` timing only ``forward(); wait()``, no harness code; the baseline
  that shows the harness's own overhead (harness / raw). Batch 1 on ``cpu`` only.

Cases are ordered device config -> variant -> batch -> mode, so consecutive tests share one loaded
network and ``raw`` runs right after the ``model`` case it is the baseline of.

With ``--tuned FILE`` (a ``tuned.json`` from ``python -m bench.tune``) every variant the file
names also gets ``model`` and ``e2e`` cases on its recommended config, after the grid's cases.
Their ``device`` is that config's name (what is probed and loaded) and their ``label`` is
``tuned``, which the id, the group and ``extra_info["device"]`` show, so ``b1/tuned/model``
lines every variant up at its own fastest equivalent config.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Modes every (variant, batch, device) gets.
MODES = ("model", "e2e")

#: The device label of the ``--tuned`` cases.
TUNED_LABEL = "tuned"

#: Where the raw-Lite overhead baseline runs: batch 1 on the plain ``cpu`` config.
RAW_BATCH, RAW_DEVICE = 1, "cpu"


@dataclass(frozen=True)
class BenchCase:
    """One benchmark: ``id`` is the pytest param id, ``group`` lines variants up for comparison."""

    variant: object  # exporters.manifest.VariantEntry
    batch: int
    device: str
    mode: str
    label: str = ""  # "tuned" for --tuned cases; defaults to the device config's name
    image_size: tuple[int, int] | None = None  # e2e frames; None: bench.inputs.frame_size

    @property
    def frame_size(self) -> tuple[int, int]:
        """(height, width) of the raw frames this case feeds."""
        from mge_harness.bench.inputs import frame_size

        return self.image_size or frame_size(self.variant)

    @property
    def _size_tag(self) -> str:
        from mge_harness.bench.inputs import IMAGE_SIZE

        if self.mode != "e2e" or self.image_size in (None, tuple(IMAGE_SIZE)):
            return ""
        return "{}x{}".format(*self.frame_size)

    @property
    def device_label(self) -> str:
        """What ids, groups and saved rows call the device: ``label`` or the config name."""
        return self.label or self.device

    @property
    def id(self) -> str:
        tag = f"-{self._size_tag}" if self._size_tag else ""
        return f"{self.variant.id}-b{self.batch}-{self.device_label}-{self.mode}{tag}"

    @property
    def group(self) -> str:
        """``b{batch}/{device}/{mode}``; raw rows join the ``model`` group they are the baseline of."""
        mode = "model" if self.mode == "raw" else self.mode
        tag = f"@{self._size_tag}" if self._size_tag else ""
        return f"b{self.batch}/{self.device_label}/{mode}{tag}"

    @property
    def key(self) -> tuple[str, str]:
        """(variant id, device config): the unit that is probed and loaded once."""
        return self.variant.id, self.device


def _modes(batch: int, device: str) -> tuple[str, ...]:
    if (batch, device) == (RAW_BATCH, RAW_DEVICE):
        return ("model", "raw", "e2e")
    return MODES


def _sized(entry, batch: int, device: str, mode: str, grid, label: str = ""):
    """The case, or one per e2e frame size (a fixed-size graph gets its own size only)."""
    if mode != "e2e":
        return [BenchCase(entry, batch, device, mode, label)]
    if entry.fixed_size:  # its one size: no tag, as before the frame axis
        return [BenchCase(entry, batch, device, mode, label)]
    return [BenchCase(entry, batch, device, mode, label, tuple(s)) for s in grid.frame_sizes]


def build_cases(variants, grid, tuned: dict[str, str] | None = None) -> list[BenchCase]:
    """Every case of ``grid`` for ``variants`` (manifest order), in execution order, then the
    ``tuned`` cases: ``tuned`` maps variant ids to their recommended config names."""
    cases = [
        case
        for device in grid.devices
        for entry in variants
        for batch in grid.batch_sizes
        for mode in _modes(batch, device)
        for case in _sized(entry, batch, device, mode, grid)
    ]
    return cases + [
        case
        for entry in variants
        if entry.id in (tuned or {})
        for batch in grid.batch_sizes
        for mode in MODES
        for case in _sized(entry, batch, tuned[entry.id], mode, grid, TUNED_LABEL)
    ]
