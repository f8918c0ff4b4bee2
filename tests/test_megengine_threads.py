"""MegEngine's threads: the event poller found, moved to SCHED_IDLE and left out of the CPU
time; Lite's waiting spin, which the test command turns off, changes no number."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mge_harness.exporters.poller import poller_threads, work_cpu_time

pytestmark = pytest.mark.skipif(
    not os.path.isdir("/proc/self/task") or not hasattr(os, "SCHED_IDLE"),
    reason="needs Linux's /proc/self/task and SCHED_IDLE",
)

#: A fresh process: no poller before the first eager tensor, one after; it spins while the
#: process sleeps unless demoted; work_cpu_time leaves its share out.
_CHILD = """
import json, os, sys, time
import megengine
from mge_harness.exporters.poller import idle_megengine_poller, poller_threads, work_cpu_time

before = poller_threads()
megengine.tensor([1.0]).numpy()
deadline = time.monotonic() + 5  # the thread names itself once it runs
while not poller_threads() and time.monotonic() < deadline:
    time.sleep(0.01)
after = poller_threads()
demoted = idle_megengine_poller() if sys.argv[1] == "demote" else 0
cpu, work = time.process_time(), work_cpu_time()
time.sleep(1.0)
print(json.dumps({
    "before": len(before), "after": len(after), "demoted": demoted,
    "policy": os.sched_getscheduler(after[0]) if after else None,
    "process_cpu": time.process_time() - cpu, "work_cpu": work_cpu_time() - work,
}))
"""


def _child(mode: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_the_first_eager_tensor_starts_a_poller_that_spins_while_the_process_sleeps():
    figures = _child("keep")
    assert (figures["before"], figures["after"]) == (0, 1)
    assert figures["policy"] == os.SCHED_OTHER
    # 0.22 of a core on an idle machine; less when the cores are busy, never none.
    assert figures["process_cpu"] > 0.01, figures
    assert figures["work_cpu"] < 0.005 + 0.2 * figures["process_cpu"], figures


def test_demoted_the_poller_runs_in_sched_idle():
    figures = _child("demote")
    assert figures["demoted"] == 1 and figures["policy"] == os.SCHED_IDLE
    assert figures["work_cpu"] < 0.01, figures


def test_every_harness_process_starts_with_the_poller_demoted():
    # The root conftest ran probe_cuda_quietly in this process (as every entry point does).
    (tid,) = poller_threads()
    assert os.sched_getscheduler(tid) == os.SCHED_IDLE


def test_work_cpu_time_counts_this_threads_work():
    start = work_cpu_time()
    x = 0
    for i in range(2_000_000):
        x += i
    assert work_cpu_time() - start > 0.01


# --- Lite's waiting spin (MGB_WORKER_MAX_SPIN, which tox's test env sets) ----------------------

#: Runs every variant of a release on seeded frames at batch 1 and 4 through the harness's
#: runners (host preprocessing for the external ones); saves the outputs.
_RUN_VARIANTS = """
import sys
import numpy as np
from mge_harness.exporters.manifest import load_manifest
from mge_harness.exporters.quiet import probe_cuda_quietly
from mge_harness.exporters.runners import image_runner

probe_cuda_quietly()
manifest = load_manifest(sys.argv[1])
rng = np.random.default_rng(0)
outputs = {}
for variant in manifest.variants:
    with image_runner(variant, manifest) as runner:
        for batch in (1, 4):
            frames = rng.integers(0, 256, (batch, 120, 160, 3), np.uint8)
            for name, array in runner.infer({"data": frames}).items():
                outputs[f"{variant.id}/{batch}/{name}"] = array
np.savez(sys.argv[2], **outputs)
"""


@pytest.mark.parametrize("model", ["tiny", "resnet18"])
def test_the_waiting_spin_changes_no_output(model, tmp_path):
    import numpy as np

    from mge_harness.exporters.release import builtin_release

    release = builtin_release(model, progress=None)
    saved = {}
    for spin in ("default", "1"):
        env = {k: v for k, v in os.environ.items() if k != "MGB_WORKER_MAX_SPIN"}
        if spin != "default":
            env["MGB_WORKER_MAX_SPIN"] = spin
        out = tmp_path / f"{spin}.npz"
        result = subprocess.run(
            [sys.executable, "-c", _RUN_VARIANTS, str(release), str(out)],
            capture_output=True, text=True, timeout=300, env=env,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "worker would execute with spin" not in result.stderr  # captured at start-up
        saved[spin] = dict(np.load(out))
    assert saved["default"].keys() == saved["1"].keys() and len(saved["1"]) >= 10
    for key, array in saved["default"].items():
        assert np.array_equal(array, saved["1"][key]), key
