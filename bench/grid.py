"""The benchmark grid: which batch sizes and device configs run, and how many rounds each gets.

There is ONE switch between the quick grid (CI: batches 1,4 on ``cpu``, e2e frames 480x640) and
the full grid (release: batches 1,2,4,8 on every device config, e2e frames 480x640 and
1080x1920): ``--full-grid`` or ``MGE_BENCH_GRID=full``. ``--batch-sizes``, ``--devices`` and
``--frame-sizes`` override the chosen grid's axes. Parsing errors are
``HarnessError`` one-liners that the plugin turns into pytest usage errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from mge_harness.exporters.errors import HarnessError

#: Environment variable that selects the grid when ``--full-grid`` is not given.
GRID_ENV = "MGE_BENCH_GRID"

#: e2e frame sizes of the full grid: VGA and full-HD camera frames.
FULL_FRAME_SIZES = ((480, 640), (1080, 1920))


@dataclass(frozen=True)
class Grid:
    """One benchmark grid: the axes, plus the round policy that makes p50/p90/p99 honest.

    Each benchmark runs ``warmup_rounds`` untimed rounds, then enough timed rounds to fill
    ``budget_s`` seconds, clamped to ``[min_rounds, max_rounds]``.
    """

    name: str
    batch_sizes: tuple[int, ...]
    devices: tuple[str, ...]
    min_rounds: int
    max_rounds: int
    budget_s: float
    warmup_rounds: int
    #: (height, width) of the raw frames the ``e2e`` cases are fed, one case each.
    frame_sizes: tuple[tuple[int, int], ...] = ((480, 640),)

    def rounds_for(self, seconds_per_round: float) -> int:
        """Timed rounds for a call that takes ``seconds_per_round`` (measured during warm-up)."""
        wanted = math.ceil(self.budget_s / max(seconds_per_round, 1e-9))
        return max(self.min_rounds, min(self.max_rounds, wanted))


def quick_grid() -> Grid:
    """The CI grid (``exporters.devices.QUICK_DEVICES``): ResNet18 takes minutes on 2 cores."""
    from mge_harness.exporters.devices import QUICK_DEVICES

    return Grid(
        name="quick",
        batch_sizes=(1, 4),
        devices=tuple(QUICK_DEVICES),
        min_rounds=30,
        max_rounds=200,
        budget_s=1.5,
        warmup_rounds=3,
    )


def full_grid() -> Grid:
    """The release grid: every device config in ``exporters.devices.DEVICE_CONFIGS``."""
    from mge_harness.exporters.devices import DEVICE_CONFIGS

    return Grid(
        name="full",
        batch_sizes=(1, 2, 4, 8),
        devices=tuple(DEVICE_CONFIGS),
        min_rounds=100,
        max_rounds=1000,
        budget_s=5.0,
        warmup_rounds=5,
        frame_sizes=FULL_FRAME_SIZES,
    )


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    """Parses ``--batch-sizes`` ("1,2,4,8") into distinct positive ints, in the given order."""
    sizes: list[int] = []
    for item in text.split(","):
        item = item.strip()
        if not item.isdigit() or int(item) < 1:
            raise HarnessError(
                f"--batch-sizes: expected positive integers separated by commas (e.g. 1,2,4,8), "
                f"got {item!r} in {text!r}"
            )
        if int(item) not in sizes:
            sizes.append(int(item))
    return tuple(sizes)


def parse_devices(text: str) -> tuple[str, ...]:
    """Parses ``--devices`` ("cpu,cpu-2t") into distinct device config names, checked by name."""
    from mge_harness.exporters.devices import get_device_config

    names: list[str] = []
    for item in text.split(","):
        name = item.strip()
        try:
            get_device_config(name)
        except HarnessError as err:
            raise HarnessError(f"--devices: {err}") from None
        if name not in names:
            names.append(name)
    return tuple(names)


def parse_frame_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """Parses ``--frame-sizes`` ("480x640,1080x1920") into distinct (height, width) pairs."""
    sizes: list[tuple[int, int]] = []
    for item in text.split(","):
        parts = item.strip().lower().split("x")
        if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise HarnessError(
                f"--frame-sizes: expected HEIGHTxWIDTH pairs separated by commas (e.g. "
                f"480x640,1080x1920), got {item.strip()!r} in {text!r}"
            )
        size = (int(parts[0]), int(parts[1]))
        if size not in sizes:
            sizes.append(size)
    return tuple(sizes)


def grid_name(full_flag: bool, env_value: str | None) -> str:
    """``"full"`` when ``--full-grid`` is given or ``MGE_BENCH_GRID=full``, else ``"quick"``."""
    if full_flag:
        return "full"
    value = (env_value or "quick").strip().lower()
    if value not in ("quick", "full"):
        raise HarnessError(f"{GRID_ENV}: expected 'quick' or 'full', got {env_value!r}")
    return value


def select_grid(
    full_flag: bool = False,
    env_value: str | None = None,
    batch_sizes: str | None = None,
    devices: str | None = None,
    frame_sizes: str | None = None,
) -> Grid:
    """The grid for these options: quick or full, with ``--batch-sizes``/``--devices``/
    ``--frame-sizes`` applied."""
    grid = full_grid() if grid_name(full_flag, env_value) == "full" else quick_grid()
    if batch_sizes is not None:
        grid = replace(grid, batch_sizes=parse_batch_sizes(batch_sizes))
    if devices is not None:
        grid = replace(grid, devices=parse_devices(devices))
    if frame_sizes is not None:
        grid = replace(grid, frame_sizes=parse_frame_sizes(frame_sizes))
    return grid
