"""Provenance for saved benchmark runs: MegEngine/Lite versions, threads, CUDA, machine load.

``machine_info()`` feeds the ``pytest_benchmark_update_machine_info`` hook, so the numbers in a
saved run can be traced to the software and hardware that produced them. The CPU (model, flags)
is pytest-benchmark's own ``machine_info["cpu"]`` (py-cpuinfo), so it is not repeated here.

``load`` says how busy the machine was when the run was saved, the two usual causes of noisy
timings on shared machines: other processes competing for the cores (the load average per
usable CPU; above 1 the run queue was longer than the CPUs it had) and a hypervisor taking
time from the guest (CPU steal, the share of CPU time the virtual CPUs waited for a physical
one). The reports read both to explain noisy rows.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

#: Fields of MegEngine's CUDA device property object recorded per device.
CUDA_PROPS = ("name", "major", "minor", "total_memory")

#: Environment variables that change how many threads numeric libraries use.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

#: How long :func:`load_info` samples ``/proc/stat`` for the current CPU steal, in seconds:
#: 100 jiffies on a 2-CPU machine at the usual 100 Hz, enough to resolve a 1 % steal share.
STEAL_WINDOW_S = 0.5


def thread_info() -> dict:
    """Logical CPUs, the CPUs this process may use, each device config's threads and env limits."""
    from mge_harness.exporters.devices import DEVICE_CONFIGS

    return {
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "device_config_threads": {name: cfg.threads for name, cfg in DEVICE_CONFIGS.items()},
        "env": {name: os.environ[name] for name in THREAD_ENV if name in os.environ},
    }


def _cpu_times(stat: Path) -> list[int] | None:
    """The aggregate ``cpu`` line of ``/proc/stat`` (user nice system idle iowait irq softirq
    steal ...), in jiffies; None where it cannot be read (not Linux)."""
    try:
        first = stat.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if first[:1] != ["cpu"] or len(first) < 9:
        return None
    return [int(value) for value in first[1:9]]


def steal_share(before: list[int], after: list[int]) -> float | None:
    """The share of CPU time stolen by the hypervisor between two ``/proc/stat`` samples."""
    deltas = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(deltas)
    return deltas[7] / total if total > 0 else None


def load_info(
    stat: Path = Path("/proc/stat"), window_s: float = STEAL_WINDOW_S, sleep=time.sleep
) -> dict:
    """How busy the machine is: load averages (1, 5, 15 min), the load per usable CPU, and the
    CPU steal share now (sampled over ``window_s``) and since boot. Unknown fields are None."""
    try:
        averages = list(os.getloadavg())
    except OSError:
        averages = None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    before = _cpu_times(stat)
    after = None
    if before is not None:
        sleep(window_s)
        after = _cpu_times(stat)
    return {
        "loadavg": averages,
        "load_per_cpu": averages[0] / usable if averages and usable else None,
        "steal_now": steal_share(before, after) if before and after else None,
        "steal_since_boot": steal_share([0] * 8, before) if before else None,
        "steal_window_s": window_s,
    }


def cuda_info() -> dict | str:
    """CUDA devices and library versions, or ``"none"`` when no CUDA device exists."""
    import megengine.device as mge_device

    if not mge_device.is_cuda_available():
        return "none"
    devices = []
    for index in range(mge_device.get_device_count("gpu")):
        prop = mge_device.get_cuda_device_property(index)
        devices.append({field: str(getattr(prop, field, "?")) for field in CUDA_PROPS})
    return {
        "cuda_version": mge_device.get_cuda_version(),
        "cudnn_version": mge_device.get_cudnn_version(),
        "devices": devices,
    }


#: CPU flags that decide which Lite kernels run fast (nchw88 wants AVX2 + FMA, VNNI speeds int8).
SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512vnni", "avx_vnni")


def cpu_info() -> dict | None:
    """The CPU as py-cpuinfo (pytest-benchmark's dependency) names it: model, architecture,
    logical CPUs and the SIMD flags of ``SIMD_FLAGS`` it has; None without py-cpuinfo. For
    files written outside a pytest-benchmark session (``tuned.json``), whose ``machine_info``
    would otherwise not say which CPU a configuration was the fastest on."""
    try:
        import cpuinfo
    except ImportError:
        return None
    info = cpuinfo.get_cpu_info()
    flags = set(info.get("flags") or ())
    return {
        "brand_raw": info.get("brand_raw"),
        "arch": info.get("arch"),
        "count": info.get("count"),
        "simd_flags": [flag for flag in SIMD_FLAGS if flag in flags],
    }


def machine_info() -> dict:
    """Everything above as one JSON-ready dict, merged into pytest-benchmark's ``machine_info``
    at its top level (where the reports read ``megengine_version``, ``threads``, ``load``...)."""
    import megengine
    import megenginelite

    from mge_harness.exporters.version import harness_version

    return {
        "harness_version": harness_version(),
        "megengine_version": megengine.__version__,
        "lite_version": megenginelite.__version__,
        "threads": thread_info(),
        "cuda": cuda_info(),
        "load": load_info(),
    }
