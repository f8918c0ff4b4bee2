"""Misbehaving models for the hardening tests, and how the tests run the entry points.

Models: one whose output is NaN (a ``--model`` factory), one that segfaults MegEngine Lite and one
that runs far longer than a probe may take. MegEngine is imported inside the functions, so
collecting the tests that import this module stays cheap.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

#: pytest's exit code for a usage error (a bad release or option of a pytest-based entry point).
USAGE_ERROR = 4


def child_env(**extra: str) -> dict[str, str]:
    """The environment of an entry point run as a child: nothing of the parent pytest session
    (xdist's PYTEST_* variables would make a child pytest believe it is a worker)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.pop("MGE_BENCH_GRID", None)
    env.update(PYTHONPATH=str(ROOT), **extra)
    return env


def run(*args, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python ARGS`` from the repository root; a child that hangs fails the test after
    ``timeout`` seconds instead of hanging it."""
    return subprocess.run(
        [sys.executable, *map(str, args)], cwd=ROOT, env=env or child_env(),
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def run_gate(
    release: Path, out: Path, *args, target: str = "equivalence/"
) -> tuple[subprocess.CompletedProcess, dict]:
    """``pytest equivalence/ --release DIR`` (ci profile, outputs under ``out``); returns the
    process and the gate.json it left, else the refusal beside it (``{}`` when none).
    ``target`` replaces ``equivalence/`` (a node id, say)."""
    gate_json = out / "gate.json"
    result = run(
        "-m", "pytest", target, "--release", release, "--hypothesis-profile", "ci",
        "-p", "no:cacheprovider", "-q", "--gate-json", gate_json,
        "--counterexamples", out / "counterexamples", *args, timeout=600,
    )  # fmt: skip
    return result, gate_result(gate_json)


def run_bench(release: Path, *args) -> subprocess.CompletedProcess:
    """``pytest bench/ --release DIR`` with timing disabled unless ``args`` save a run."""
    return run("-m", "pytest", "bench/", "--release", release, "-p", "no:cacheprovider", "-q",
               "-rs", *args)  # fmt: skip


def problem_lines(stderr: str) -> list[str]:
    """The stderr lines a user would read: not blank, not MegEngine's info:/debug: chatter."""
    return [
        line for line in stderr.splitlines()
        if line.strip() and not line.startswith(("info:", "debug:"))
    ]  # fmt: skip


def assert_one_line(result, code: int, prefix: str, *fragments: str) -> str:
    """``result`` ended with exit ``code`` and one stderr line starting with ``prefix`` that holds
    every fragment, and no traceback; returns the line."""
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    lines = problem_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith(prefix), output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in output
    return lines[0]


def nan_net():
    """``--model tests.hardening_models:nan_net``: a small classifier that exports fine and
    whose every logit is NaN (``sqrt`` of a negative number) on every input."""
    import megengine.functional as F
    import megengine.module as M

    class NanNet(M.Module):
        def __init__(self):
            super().__init__()
            self.conv = M.Conv2d(3, 4, 3, padding=1)
            self.fc = M.Linear(4, 5)

        def forward(self, x):
            pooled = F.mean(F.relu(self.conv(x)), axis=(2, 3))
            return F.sqrt(-1.0 - F.abs(self.fc(pooled)))

    return NanNet()


def dump_nchw44_crasher(path: Path, size: tuple[int, int]) -> None:
    """A small ResNet-style net dumped with ``enable_nchw44``: Lite segfaults on it on x86.

    A 64-channel 7x7 stem, max-pool and two residual blocks are enough; a plain conv stack is not.
    Input ``data``: float32 NCHW at ``size`` (an ``external`` variant).
    """
    import megengine as mge
    import megengine.functional as F
    import megengine.module as M
    from megengine.jit import trace

    class Block(M.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1, self.bn1 = (
                M.Conv2d(cin, cout, 3, stride, 1, bias=False),
                M.BatchNorm2d(cout),
            )
            self.conv2, self.bn2 = M.Conv2d(cout, cout, 3, 1, 1, bias=False), M.BatchNorm2d(cout)
            self.down = M.Identity()
            if stride != 1 or cin != cout:
                self.down = M.Sequential(
                    M.Conv2d(cin, cout, 1, stride, bias=False), M.BatchNorm2d(cout)
                )

        def forward(self, x):
            y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
            return F.relu(y + self.down(x))

    class Net(M.Module):
        def __init__(self):
            super().__init__()
            self.stem = M.Sequential(
                M.Conv2d(3, 64, 7, 2, 3, bias=False),
                M.BatchNorm2d(64),
                M.ReLU(),
                M.MaxPool2d(3, 2, 1),
            )
            self.blocks = M.Sequential(Block(64, 64, 1), Block(64, 16, 2))
            self.fc = M.Linear(16, 10)

        def forward(self, x):
            return self.fc(F.mean(self.blocks(self.stem(x)), axis=[2, 3]))

    net = Net()
    net.eval()

    @trace(symbolic=True, capture_as_const=True)
    def forward(data):
        return net(data)

    forward(mge.tensor(np.zeros((1, 3, *size), np.float32)))
    forward.dump(str(path), arg_names=["data"], enable_nchw44=True)


def dump_slow_raw_input(path: Path) -> None:
    """A raw-input graph (uint8 BGR NHWC, any size, like a ``fused`` variant) whose cost grows
    with the image: eight 64-channel 3x3 convolutions at full resolution, about 0.2 TFLOP for
    one 480x640 image (minutes on one core) but cheap on the 8x8 image it is traced with. It
    stands for a variant that hangs in Lite: a probe times out on it."""
    import megengine.functional as F
    import megengine.module as M

    from mge_harness.exporters.export import dump_graph

    class FullResolutionNet(M.Module):
        def __init__(self):
            super().__init__()
            self.stem = M.Conv2d(3, 64, 3, padding=1)
            self.body = M.Sequential(*(M.Conv2d(64, 64, 3, padding=1) for _ in range(8)))
            self.fc = M.Linear(64, 10)

        def forward(self, data):
            x = F.transpose(data.astype("float32"), (0, 3, 1, 2))
            return self.fc(F.mean(self.body(F.relu(self.stem(x))), axis=(2, 3)))

    net = FullResolutionNet()
    net.eval()
    example = np.zeros((1, 8, 8, 3), np.uint8)
    options = {"arg_names": ["data"], "output_names": ["logits"], "optimize_for_inference": True}
    dump_graph(net, example, Path(path), options)


def gate_result(gate_json: Path) -> dict:
    """The document a gate run left: gate.json, else the refusal beside it (``{}`` when none)."""
    from mge_harness.equivalence.report import error_path

    for path in (gate_json, error_path(gate_json)):
        if path.exists():
            return json.loads(path.read_text())
    return {}
