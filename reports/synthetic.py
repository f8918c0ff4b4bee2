"""Synthetic saved runs: realistic pytest-benchmark JSON with seeded raw timings.

For tests, and to preview a report without running a model::

    python -m reports.synthetic /tmp/demo      # writes /tmp/demo/.benchmarks and /tmp/demo/gate.json
    python -m reports --benchmarks /tmp/demo/.benchmarks --gate /tmp/demo/gate.json --out /tmp/demo

The summary fields are computed by pytest-benchmark's own ``Stats`` (imported lazily: it is a test
dependency), so the files look exactly like ones saved with ``--benchmark-save-data``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

MACHINE = "Linux-CPython-3.10-64bit"


def timings(median_s: float, cv: float, rounds: int, seed: int) -> list[float]:
    """``rounds`` log-normal timings around ``median_s`` seconds with about ``cv`` relative spread."""
    rng = np.random.default_rng(seed)
    return (median_s * np.exp(cv * rng.standard_normal(rounds))).tolist()


def benchmark(
    variant: str,
    samples: list[float] | None,
    *,
    batch: int = 1,
    device: str = "cpu",
    mode: str = "model",
    status: str = "ok",
    save_data: bool = True,
    **extra: object,
) -> dict:
    """One entry of a saved run's ``benchmarks`` list, with the ``extra_info`` our suites set.

    ``variant`` is ``<model>.<preprocessing>.cbn-<on|off>``; ``samples`` are seconds per call
    (None for a configuration that did not run). ``extra`` adds or overrides ``extra_info`` keys.
    """
    model, preprocessing, cbn = variant.split(".")
    param = f"{variant}-{device}-{mode}-b{batch}"
    info = {
        "variant": variant,
        "model": model,
        "preprocessing": preprocessing,
        "fuse_conv_bias_nonlinearity": cbn == "cbn-on",
        "batch": batch,
        "device": device,
        "mode": mode,
        "status": status,
        **extra,
    }
    entry = {
        "group": variant,
        "name": f"test_latency[{param}]",
        "fullname": f"bench/test_latency.py::test_latency[{param}]",
        "params": {"variant": variant, "batch": batch},
        "param": param,
        "extra_info": info,
        "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": 5, "warmup": True},
    }
    if samples is not None:
        entry["stats"] = _stats(samples, save_data)
    return entry


def _stats(samples: list[float], save_data: bool) -> dict:
    from pytest_benchmark.stats import Stats

    stats = Stats()
    for sample in samples:
        stats.update(sample)
    result = stats.as_dict()
    if save_data:
        result["data"] = list(samples)
    result["iterations"] = 1
    return result


def saved_run(
    benchmarks: list[dict],
    *,
    node: str = "ci-runner",
    when: str = "2026-01-01T00:00:00+00:00",
    commit: str = "0123456789abcdef0123456789abcdef01234567",
    cuda: object = "none",
    load_per_cpu: float = 0.5,
    steal: float = 0.0,
) -> dict:
    """A whole saved run, with ``machine_info`` laid out as ``pytest bench/`` saves it:
    pytest-benchmark's fields (``cpu`` is py-cpuinfo's) and ``bench.machine.machine_info()``'s
    merged in at the top level. ``load_per_cpu`` and ``steal`` fill its ``load`` record."""
    return {
        "machine_info": {
            "node": node,
            "processor": "x86_64",
            "machine": "x86_64",
            "python_compiler": "GCC 12.2.0",
            "python_implementation": "CPython",
            "python_implementation_version": "3.10.13",
            "python_version": "3.10.13",
            "python_build": ["main", "Jan  1 2026 00:00:00"],
            "release": "6.1.0",
            "system": "Linux",
            "cpu": {
                "brand_raw": "Intel(R) Xeon(R) Processor",
                "arch": "X86_64",
                "count": 2,
                "flags": ["avx", "avx2", "fma", "sse4_2"],
            },
            "harness_version": "0.1.0",
            "megengine_version": "1.13.0",
            "lite_version": "1.13.0",
            "threads": {
                "logical_cpus": 2,
                "usable_cpus": 2,
                "device_config_threads": {"cpu": 1, "cpu-2t": 2},
                "env": {},
            },
            "cuda": cuda,
            "load": {
                "loadavg": [load_per_cpu * 2, load_per_cpu * 2, load_per_cpu * 2],
                "load_per_cpu": load_per_cpu,
                "steal_now": steal,
                "steal_since_boot": steal,
                "steal_window_s": 0.5,
            },
        },
        "commit_info": {"id": commit, "dirty": False, "branch": "main", "project": "harness"},
        "benchmarks": benchmarks,
        "datetime": when,
        "version": "5.3.1",
    }


def save(storage: Path, run: dict, number: int, machine: str = MACHINE) -> Path:
    """Write ``run`` where pytest-benchmark would: ``<storage>/<machine>/<NNNN>_<commit>_<date>.json``."""
    stamp = run["datetime"][:19].replace("-", "").replace(":", "").replace("T", "_")
    path = Path(storage) / machine / f"{number:04d}_{run['commit_info']['id'][:8]}_{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run, indent=2))
    return path


def gate(verdicts: dict[str, str], *, release: str = "demo-release") -> dict:
    """A gate result with one ``tolerance`` check per variant and plausible metrics."""
    variants = [
        {
            "id": variant,
            "verdict": verdict,
            "expected_failure": "warps pixels" if verdict in ("xfail", "xpass") else None,
            "checks": [
                {
                    "check": "tolerance",
                    "verdict": "pass" if verdict in ("pass", "xpass") else "fail",
                    "metrics": {
                        "max_abs": 3e-5 if verdict == "pass" else 0.8,
                        "max_rel": 2e-6 if verdict == "pass" else 0.3,
                        "cosine": 0.9999999 if verdict == "pass" else 0.91,
                        "top1_agreement": 1.0 if verdict == "pass" else 0.6,
                    },
                    "tolerance": {"atol": 1e-4, "rtol": 1e-3, "cosine_min": 0.9999},
                    "margin": 3.3 if verdict == "pass" else None,
                    "counterexample": None,
                    "message": f"{variant}: {verdict}",
                }
            ],
        }
        for variant, verdict in verdicts.items()
    ]
    passed = all(v in ("pass", "xfail") for v in verdicts.values())
    return {
        "release": release,
        "model": "resnet18",
        "created": "2026-01-01T00:00:00+00:00",
        "hypothesis_profile": "ci",
        "passed": passed,
        "variants": variants,
    }


def sweep_row(variant: str, batch: int, config: str, verdict: str = "ok", **fields) -> dict:
    """One ``sweep`` entry of ``tuned.json``, shaped like ``bench.tune.Row.to_dict()``;
    ``fields`` (``speedup``, ``interval``, ``reason`` ...) override the defaults."""
    timed = verdict == "ok"
    row = {
        "variant": variant,
        "batch": batch,
        "config": config,
        "verdict": verdict,
        "reason": "" if timed else f"{config}: {verdict}",
        "speedup": 1.0 if timed else None,
        "interval": [0.98, 1.02] if timed else [None, None],
        "cpu_per_wall": 0.99 if timed else None,
        "baseline_cpu_per_wall": 0.99 if timed else None,
        "baseline_ms": 30.0 if timed else None,
        "candidate_ms": 30.0 if timed else None,
        "rounds": 20 if timed else 0,
        "equivalence": {"margin": 0.97} if verdict in ("ok", "not equivalent") else {},
    }
    return {**row, **fields}


def tuned(sweeps: dict[str, list[dict]], recommended: dict[str, str | None]) -> dict:
    """A ``tuned.json`` document (``bench.tune.document``'s layout) from sweep rows per variant
    and the recommended config of each (None: the baseline failed its probe)."""
    variants = {}
    for variant, rows in sweeps.items():
        name = recommended.get(variant)
        chosen = [row for row in rows if row["config"] == name]
        variants[variant] = {
            "recommended": None
            if name is None
            else {
                "config": name,
                "options": {},
                "threads": 1,
                "per_batch": {
                    str(row["batch"]): {
                        "speedup": row["speedup"],
                        "interval": row["interval"],
                        "cpu_per_wall": row["cpu_per_wall"],
                        "equivalence": row["equivalence"],
                    }
                    for row in chosen
                },
            },
            "sweep": rows,
        }
    return {
        "format_version": 1,
        "model": "resnet18",
        "baseline": "cpu",
        "batches": sorted({row["batch"] for rows in sweeps.values() for row in rows}),
        "tolerance": {"atol_scale": 1e-5, "rtol": 0.0, "cosine_min": 1 - 1e-9},
        "machine_info": saved_run([])["machine_info"],
        "variants": variants,
    }


VARIANTS = (
    "resnet18.external.cbn-off",
    "resnet18.external.cbn-on",
    "resnet18.fused.cbn-off",
    "resnet18.fused.cbn-on",
)
# Milliseconds per image on CPU, model-only; e2e adds host preprocessing for external variants.
_BASE_MS = {"external": 32.0, "fused": 32.6}
_CBN_ON = 0.93
_HOST_PREPROCESS_MS = 1.6
_CUDA_SPEEDUP = 9.0


def demo_latency_ms(variant: str, batch: int, mode: str, device: str) -> float:
    """The made-up median latency of the demo data, in ms per call."""
    _, preprocessing, cbn = variant.split(".")
    per_image = _BASE_MS[preprocessing] * (_CBN_ON if cbn == "cbn-on" else 1.0)
    if mode == "e2e":
        per_image += _HOST_PREPROCESS_MS if preprocessing == "external" else 0.3
    per_image /= _CUDA_SPEEDUP if device == "cuda" else 1.0
    return per_image * batch * (0.92 if batch > 1 else 1.0)


def demo_run(device: str, number: int, rounds: int = 25) -> dict:
    """Every demo variant x batch (1, 8) x mode (model, e2e) on ``device``, as one saved run."""
    grid = [(v, b, m) for v in VARIANTS for b in (1, 8) for m in ("model", "e2e")]
    entries = [
        benchmark(
            variant,
            timings(demo_latency_ms(variant, batch, mode, device) / 1e3, 0.03, rounds, seed),
            batch=batch,
            device=device,
            mode=mode,
            **({"image_size": [480, 640]} if mode == "e2e" else {}),
        )
        for seed, (variant, batch, mode) in enumerate(grid, start=100 * number)
    ]
    cuda = {"devices": [{"name": "Tesla T4"}]} if device == "cuda" else "none"
    node = "gpu-box" if device == "cuda" else "ci-runner"
    return saved_run(entries, node=node, when=f"2026-01-{number:02d}T10:00:00+00:00", cuda=cuda)


def demo_storage(root: Path, rounds: int = 25) -> tuple[Path, Path]:
    """A CPU run, a CUDA run from another host, a not-measured sidecar and a gate under ``root``.

    Returns ``(storage folder, gate.json path)``.
    """
    storage = Path(root) / ".benchmarks"
    for number, device in enumerate(("cpu", "cuda"), start=1):
        save(storage, demo_run(device, number, rounds), number)
    timeout = {"variant": VARIANTS[-1], "batch": 64, "device": "cpu", "mode": "e2e"}
    timeout.update(status="timeout", reason="exceeded 600 s")
    sidecar = storage / MACHINE / "0001.not-measured.json"
    sidecar.write_text(json.dumps({"not_measured": [timeout]}, indent=2))
    gate_path = Path(root) / "gate.json"
    verdicts = {**dict.fromkeys(VARIANTS, "pass"), "resnet18.identity-warp.cbn-on": "xfail"}
    gate_path.write_text(json.dumps(gate(verdicts), indent=2))
    return storage, gate_path


if __name__ == "__main__":
    print(*demo_storage(Path(sys.argv[1] if len(sys.argv) > 1 else ".")), sep="\n")
