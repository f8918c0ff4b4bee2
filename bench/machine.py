"""Provenance for saved benchmark runs: MegEngine/Lite versions, CPU, threads, CUDA.

``machine_info()`` feeds the ``pytest_benchmark_update_machine_info`` hook, so the numbers in a
saved run can be traced to the software and hardware that produced them.
"""

from __future__ import annotations

import os
from pathlib import Path

#: CPU flags that decide which MegEngine x86 kernels run (the full list stays in ``cpu.flags``).
SIMD_FLAGS = (
    "sse4_1",
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512vnni",
    "avx_vnni",
    "amx_tile",
)

#: Fields of MegEngine's CUDA device property object recorded per device.
CUDA_PROPS = ("name", "major", "minor", "total_memory")

#: Environment variables that change how many threads numeric libraries use.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def cpu_model_and_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, list[str]]:
    """CPU model name and the ``SIMD_FLAGS`` it has, from ``/proc/cpuinfo`` (first processor)."""
    model, flags = "unknown", []
    try:
        text = cpuinfo.read_text()
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == "unknown":
            model = value.strip()
        elif key == "flags" and not flags:
            present = set(value.split())
            flags = [flag for flag in SIMD_FLAGS if flag in present]
    return model, flags


def thread_info() -> dict:
    """Logical CPUs, the CPUs this process may use, each device config's threads and env limits."""
    from mge_harness.exporters.devices import DEVICE_CONFIGS

    return {
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "device_config_threads": {name: cfg.threads for name, cfg in DEVICE_CONFIGS.items()},
        "env": {name: os.environ[name] for name in THREAD_ENV if name in os.environ},
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


def machine_info() -> dict:
    """Everything above as one JSON-ready dict, merged into pytest-benchmark's ``machine_info``
    (the reports read ``megengine_version``/``lite_version`` at its top level)."""
    import megengine
    import megenginelite

    from mge_harness.exporters.version import harness_version

    model, flags = cpu_model_and_flags()
    return {
        "harness_version": harness_version(),
        "megengine_version": megengine.__version__,
        "lite_version": megenginelite.__version__,
        "cpu_model": model,
        "cpu_simd_flags": flags,
        "threads": thread_info(),
        "cuda": cuda_info(),
    }
