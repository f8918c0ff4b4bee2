"""Crash isolation: load and run a variant once in a child process before benchmarking it.

Some MegEngine options segfault Lite on x86 (a ResNet18 dump with ``enable_nchw44``,
``LiteConfig.auto_optimize_inference=1``): in-process, that would kill the whole pytest session.
So each (variant, device config) is probed once per session in a subprocess::

    python -m bench.probe --release DIR --variant ID --device NAME --batch-sizes 1,4

which loads the .mge on the device config and runs one forward per batch size. A signal exit,
a timeout or an error becomes a ``ProbeResult`` whose ``reason`` the benchmark is skipped with.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: Seconds a probe may take before it counts as hung. Defaults to 120 (``--probe-timeout``).
DEFAULT_TIMEOUT_S = 120.0

_REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of one probe: truthy when the variant loaded and ran on the device config."""

    status: str  # "ok" | "crashed" | "timeout" | "error"
    reason: str = ""
    seconds: float = 0.0

    def __bool__(self) -> bool:
        return self.status == "ok"


def probe_command(release_dir, variant_id: str, device: str, batch_sizes) -> list[str]:
    """The child command that probes ``variant_id`` on ``device`` at every batch size."""
    return [
        sys.executable,
        "-m",
        "bench.probe",
        "--release",
        str(Path(release_dir).resolve()),
        "--variant",
        variant_id,
        "--device",
        device,
        "--batch-sizes",
        ",".join(str(size) for size in batch_sizes),
    ]


def run_probe(command: Sequence[str], timeout: float = DEFAULT_TIMEOUT_S) -> ProbeResult:
    """Runs a probe command and classifies how it ended. Defaults to a 120 s timeout."""
    start = time.perf_counter()
    try:
        done = subprocess.run(
            list(command), cwd=_REPO_ROOT, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return ProbeResult("timeout", f"timed out after {timeout:g}s in probe", timeout)
    return classify_exit(done.returncode, done.stderr, time.perf_counter() - start)


def classify_exit(returncode: int, stderr: str, seconds: float = 0.0) -> ProbeResult:
    """``ProbeResult`` for a finished probe: ok, killed by a signal, or failed with a message."""
    if returncode == 0:
        return ProbeResult("ok", "", seconds)
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return ProbeResult("crashed", f"crashed: {name} (exit {returncode}) in probe", seconds)
    return ProbeResult(
        "error", f"probe failed (exit {returncode}): {_last_message(stderr)}", seconds
    )


def _last_message(stderr: str) -> str:
    """The last stderr line that is not MegEngine's ``info:``/``debug:`` start-up noise."""
    lines = [
        line.strip()
        for line in stderr.splitlines()
        if line.strip() and not line.startswith(("info:", "debug:"))
    ]
    return lines[-1] if lines else "no error output"


def _probe(release: str, variant_id: str, device: str, batch_sizes: str) -> None:
    from bench.grid import parse_batch_sizes
    from bench.inputs import image_batch, model_feed
    from exporters.manifest import load_manifest
    from exporters.runners import LiteRunner

    manifest = load_manifest(release)
    entry = manifest.variant(variant_id)
    with LiteRunner(entry.path, device, entry.input) as runner:
        for batch in parse_batch_sizes(batch_sizes):
            runner.set_inputs(model_feed(entry, manifest, image_batch(batch)))
            runner.run()


def main(argv: Sequence[str] | None = None) -> int:
    """Probe CLI: exit 0 when every forward ran; crashes surface as the process's signal."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.probe", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--release", required=True, help="release folder with manifest.json")
    parser.add_argument("--variant", required=True, help="variant id from the manifest")
    parser.add_argument("--device", default="cpu", help="device config name. Defaults to cpu.")
    parser.add_argument("--batch-sizes", default="1", help="batch sizes to run. Defaults to 1.")
    args = parser.parse_args(argv)
    _probe(args.release, args.variant, args.device, args.batch_sizes)
    print("ok")
    return 0


if __name__ == "__main__":
    from exporters.errors import run_cli

    sys.exit(run_cli(main))
