"""Crash and hang isolation: run variants once in a child process before trusting them in-process.

Some MegEngine options segfault Lite on x86 (a ResNet18 dump with ``enable_nchw44``,
``LiteConfig.auto_optimize_inference=1``); in-process, that would kill the whole pytest session
of the gate or the benchmarks. So both first probe variants in a child::

    python -m exporters.probe --release DIR --variant ID [--variant ID ...] [--device NAME]
                              [--batch-sizes 1,4] [--image-size 480x640]

which loads each variant on the device config and runs one forward per batch size on random
uint8 BGR frames (at the variant's own size when its ``input.shape`` fixes one; through ``exporters.runners.image_runner``, so external variants get the host
OpenCV preprocessing). It prints ``ready`` once MegEngine is imported and the release read, then
per variant ``ok<TAB>id`` or ``error<TAB>id<TAB>message`` (a one-line error: the file does not
load, the input is not as declared ...). The parent reads those lines as they come: a signal
exit or a timeout (per variant; the start-up before ``ready`` has its own, longer allowance)
becomes the ``ProbeResult`` of the variant that was running, and the variants after it are probed
in a fresh child. Everything is probed in one child unless a variant crashes or hangs.
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mge_harness.exporters.errors import HarnessError

#: Seconds one variant's probe may take before it counts as hung. Defaults to 120.
DEFAULT_TIMEOUT_S = 120.0

#: Seconds a probe child may take to start (import MegEngine, read and verify the release), at
#: least; a longer per-variant timeout applies to the start-up too.
STARTUP_TIMEOUT_S = 60.0

#: (height, width) of the frames a probe feeds raw-input variants. Defaults to 480x640.
DEFAULT_IMAGE_SIZE = (480, 640)

_REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of one probe: truthy when the variant loaded and ran on the device config."""

    status: str  # "ok" | "crashed" | "timeout" | "error"
    reason: str = ""
    seconds: float = 0.0

    def __bool__(self) -> bool:
        return self.status == "ok"


def check_timeout(seconds: float, option: str = "--probe-timeout") -> float:
    """``seconds`` when it is a positive number, else HarnessError naming ``option``."""
    if not seconds > 0:
        raise HarnessError(f"{option}: expected a positive number of seconds, got {seconds:g}")
    return seconds


def probe_command(
    release_dir,
    variant_ids: Iterable[str],
    device: str = "cpu",
    batch_sizes: Iterable[int] = (1,),
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
) -> list[str]:
    """The child command that probes ``variant_ids`` in order on ``device`` at every batch size."""
    command = [
        sys.executable,
        "-m",
        "mge_harness.exporters.probe",
        "--release",
        str(Path(release_dir).resolve()),
    ]
    for variant_id in variant_ids:
        command += ["--variant", variant_id]
    return command + [
        "--device",
        device,
        "--batch-sizes",
        ",".join(str(size) for size in batch_sizes),
        "--image-size",
        f"{image_size[0]}x{image_size[1]}",
    ]


def probe_variants(
    release_dir,
    variant_ids: Sequence[str],
    device: str = "cpu",
    batch_sizes: Iterable[int] = (1,),
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> dict[str, ProbeResult]:
    """Probes every variant of ``variant_ids`` in child processes; a result per id.

    ``device`` defaults to "cpu", ``batch_sizes`` to (1,), ``image_size`` to 480x640 and
    ``timeout`` (seconds per variant) to 120.
    """
    batch_sizes = tuple(batch_sizes)
    results: dict[str, ProbeResult] = {}
    pending = list(variant_ids)
    while pending:
        command = probe_command(release_dir, pending, device, batch_sizes, image_size)
        deadlines = [max(STARTUP_TIMEOUT_S, timeout)] + [timeout] * len(pending)
        reported, end = watch(command, deadlines, timeout, _is_report)
        for line, seconds in reported[1:]:  # the first one is "ready"
            status, variant_id, *message = line.split("\t", 2)
            assert variant_id == pending[0], f"probe reported {variant_id!r}, not {pending[0]!r}"
            reason = f"probe failed: {message[0]}" if message else ""
            results[pending.pop(0)] = ProbeResult(status, reason, seconds)
        if pending:
            if end:  # exit 0 without the line: nothing ran it, so it cannot be trusted
                end = ProbeResult("error", "probe ended without running it", end.seconds)
            results[pending.pop(0)] = end
    return results


def _is_report(line: str) -> bool:
    return line == "ready" or line.startswith(("ok\t", "error\t"))


def run_probe(command: Sequence[str], timeout: float = DEFAULT_TIMEOUT_S) -> ProbeResult:
    """Runs one probe command and classifies how it ended. Defaults to a 120 s timeout."""
    return watch(command, [], timeout)[1]


def watch(
    command: Sequence[str],
    deadlines: Sequence[float],
    timeout: float,
    is_milestone: Callable[[str], bool] = lambda line: False,
) -> tuple[list[tuple[str, float]], ProbeResult]:
    """Runs ``command`` and reads its stdout lines as they come.

    The lines for which ``is_milestone`` holds are progress: the k-th must come within
    ``deadlines[k]`` seconds of the one before (of the start, for the first), and the exit
    within ``timeout`` seconds of the last one, or the child is killed. Returns the milestones
    with the seconds each took, and how the child ended ("timeout", or its exit status).
    """
    reported: list[tuple[str, float]] = []
    with tempfile.TemporaryFile() as stderr:
        child = subprocess.Popen(
            list(command), cwd=_REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=stderr,
        )  # fmt: skip
        with child, selectors.DefaultSelector() as selector:
            selector.register(child.stdout, selectors.EVENT_READ)
            since = time.perf_counter()
            buffer = b""
            while True:
                allowed = deadlines[len(reported)] if len(reported) < len(deadlines) else timeout
                left = since + allowed - time.perf_counter()
                if left <= 0:
                    child.kill()
                    child.wait()
                    return reported, ProbeResult(
                        "timeout", f"timed out after {allowed:g}s in probe", allowed
                    )
                if not selector.select(left):
                    continue
                chunk = os.read(child.stdout.fileno(), 65536)
                if not chunk:
                    break
                *lines, buffer = (buffer + chunk).split(b"\n")
                for line in (raw.decode("utf-8", "replace").rstrip("\r") for raw in lines):
                    if is_milestone(line):
                        now = time.perf_counter()
                        reported.append((line, now - since))
                        since = now
            returncode = child.wait()
        stderr.seek(0)
        text = stderr.read().decode("utf-8", "replace")
    return reported, classify_exit(returncode, text, time.perf_counter() - since)


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


# --- the child ------------------------------------------------------------------------------


def _integers(text: str, separator: str, count: int | None, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(separator))
    except ValueError:
        values = ()
    if not values or (count and len(values) != count) or min(values) < 1:
        raise HarnessError(
            f"{option} {text!r}: expected positive integers separated by {separator!r}"
        )
    return values


def _probe(release: str, variant_ids: list[str], device: str, batch_sizes, image_size) -> None:
    import numpy as np

    from mge_harness.exporters.manifest import load_manifest
    from mge_harness.exporters.runners import image_runner

    manifest = load_manifest(release)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (max(batch_sizes), *image_size, 3), np.uint8)
    print("ready", flush=True)
    for variant_id in variant_ids:
        try:
            entry = manifest.variant(variant_id)
            feed = frames
            if entry.fixed_size:  # a graph that takes only one size is probed at that size
                feed = rng.integers(0, 256, (len(frames), *entry.fixed_size, 3), np.uint8)
            with image_runner(entry, manifest, device) as runner:
                for batch in batch_sizes:
                    runner.infer({"data": feed[:batch]})
        except Exception as err:  # reported, and the next variant is probed
            kind = "" if isinstance(err, HarnessError) else f"{type(err).__name__}: "
            message = (str(err).strip().splitlines() or ["no message"])[0]
            print(f"error\t{variant_id}\t{kind}{message}", flush=True)
        else:
            print(f"ok\t{variant_id}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Probe CLI: ``ready``, then a line per variant (see the module docstring); crashes
    surface as the process's signal."""
    parser = argparse.ArgumentParser(
        prog="python -m exporters.probe", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--release", required=True, help="release folder with manifest.json")
    parser.add_argument(
        "--variant", required=True, action="append", help="variant id (repeat for several)"
    )
    parser.add_argument("--device", default="cpu", help="device config name. Defaults to cpu.")
    parser.add_argument("--batch-sizes", default="1", help="batch sizes to run. Defaults to 1.")
    parser.add_argument(
        "--image-size", default="480x640", help="HEIGHTxWIDTH of the frames. Defaults to 480x640."
    )
    args = parser.parse_args(argv)
    batch_sizes = _integers(args.batch_sizes, ",", None, "--batch-sizes")
    image_size = _integers(args.image_size, "x", 2, "--image-size")
    _probe(args.release, args.variant, args.device, batch_sizes, image_size)
    return 0


if __name__ == "__main__":
    from mge_harness.exporters.errors import run_cli

    sys.exit(run_cli(main))
