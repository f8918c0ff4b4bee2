"""The benchmark grid: which batch sizes and device configs run, and how many rounds each gets.

There is ONE switch between the quick grid (CI: batches 1,4 on ``cpu``) and the full grid (release:
batches 1,2,4,8 on every device config): ``--full-grid`` or ``MGE_BENCH_GRID=full``.
``--batch-sizes`` and ``--devices`` override the chosen grid's axes. Parsing errors are
``HarnessError`` one-liners that the plugin turns into pytest usage errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from mge_harness.exporters.errors import HarnessError

#: Environment variable that selects the grid when ``--full-grid`` is not given.
GRID_ENV = "MGE_BENCH_GRID"


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
) -> Grid:
    """The grid for these options: quick or full, with ``--batch-sizes``/``--devices`` applied."""
    grid = full_grid() if grid_name(full_flag, env_value) == "full" else quick_grid()
    if batch_sizes is not None:
        grid = replace(grid, batch_sizes=parse_batch_sizes(batch_sizes))
    if devices is not None:
        grid = replace(grid, devices=parse_devices(devices))
    return grid
