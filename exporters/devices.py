"""Named device configs: where and how MegEngine Lite runs a model. Defined here and nowhere else.

A config is data (a frozen dataclass) so that benchmarks, the gate and reports can name it in
ids, saved runs and tables. ``--devices cpu,cpu-2t`` picks configs by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from mge_harness.exporters.errors import HarnessError

#: Lite algorithm-selection strategies by name (``LiteAlgoSelectStrategy`` flags).
ALGO_POLICIES = {
    "heuristic": ("LITE_ALGO_HEURISTIC",),
    "profile": ("LITE_ALGO_PROFILE",),
    "profile-reproducible": ("LITE_ALGO_PROFILE", "LITE_ALGO_REPRODUCIBLE"),
}


@dataclass(frozen=True)
class DeviceConfig:
    """One way to run a network: device, threads, Lite options and algorithm policy.

    ``options`` are ``LiteOptions`` fields set before loading, e.g. ``(("weight_preprocess", 1),)``.
    ``algo_policy`` names an entry of ``ALGO_POLICIES`` (fast-run when "profile"). Defaults to
    one CPU thread with Lite's default options.
    """

    name: str
    device: str = "cpu"
    threads: int = 1
    device_id: int = 0
    options: tuple[tuple[str, int], ...] = ()
    algo_policy: str | None = None
    description: str = ""

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "device": self.device,
            "threads": self.threads,
            "device_id": self.device_id,
            "options": dict(self.options),
            "algo_policy": self.algo_policy,
        }


DEVICE_CONFIGS: dict[str, DeviceConfig] = {
    c.name: c
    for c in (
        DeviceConfig("cpu", description="1 CPU thread, Lite defaults"),
        DeviceConfig("cpu-2t", threads=2, description="2 CPU threads"),
        DeviceConfig(
            "cpu-fastrun",
            algo_policy="profile",
            description="fast-run: profile every conv algorithm on first run, keep the fastest",
        ),
        DeviceConfig(
            "cpu-weightpre",
            options=(("weight_preprocess", 1),),
            description="weight preprocessing: transform weights once at load, not per forward",
        ),
        DeviceConfig(
            "cpu-record",
            options=(("comp_node_seq_record_level", 1), ("var_sanity_check_first_run", 0)),
            description="record the kernel sequence on the first run and replay it",
        ),
        DeviceConfig(
            "cpu-nchw88",
            options=(("enable_nchw88", 1),),
            description="NCHW88 layout (x86 AVX2 kernels, channels in blocks of 8), set at load",
        ),
        DeviceConfig(
            "cpu-nchw88-weightpre",
            options=(("enable_nchw88", 1), ("weight_preprocess", 1)),
            description="NCHW88 layout plus weight preprocessing at load",
        ),
        DeviceConfig(
            "cpu-nchw88-2t",
            threads=2,
            options=(("enable_nchw88", 1),),
            description="NCHW88 layout on 2 CPU threads",
        ),
        # MEGENGINE_NOTES section 8: a float ResNet18 loaded this way segfaulted on its first
        # forward on x86. Probes of this checkout's tiny and resnet18 dumps ran (2026-12), so
        # it stays a candidate that every sweep probes in a child before loading it.
        DeviceConfig(
            "cpu-nchw44",
            options=(("enable_nchw44", 1),),
            description="NCHW44 layout (ARM kernels); reported to segfault on x86 float models",
        ),
        DeviceConfig("cuda", device="cuda", description="CUDA device 0, Lite defaults"),
    )
}

#: The configs of the quick grid; the full grid takes every config above.
QUICK_DEVICES = ("cpu",)


def get_device_config(name: str | DeviceConfig) -> DeviceConfig:
    """Returns the named config, or raises HarnessError listing the known names."""
    if isinstance(name, DeviceConfig):
        return name
    try:
        return DEVICE_CONFIGS[name]
    except KeyError:
        known = ", ".join(DEVICE_CONFIGS)
        raise HarnessError(f"unknown device config {name!r}; known configs: {known}") from None


@lru_cache(maxsize=1)
def cuda_device_count() -> int:
    """How many CUDA devices MegEngine Lite sees (0 on a machine without a GPU)."""
    from mge_harness.exporters.quiet import probe_cuda_quietly

    return probe_cuda_quietly()


def cuda_skip_reason() -> str | None:
    """None when a CUDA device exists, otherwise why CUDA configs are skipped."""
    if cuda_device_count() > 0:
        return None
    return "no CUDA device: MegEngine Lite sees 0 CUDA devices on this machine"


def unavailable_reason(config: DeviceConfig) -> str | None:
    """None when ``config`` can run here, otherwise a one-line reason to skip it."""
    if config.device == "cuda":
        return cuda_skip_reason()
    return None
