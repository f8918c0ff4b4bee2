"""What each timing mode times. Loading, input creation and warm-up stay outside the timed call.

* ``model``: inputs copied into the Lite tensors once; the timed call is ``LiteRunner.run()``.
* ``e2e``: the timed call is ``image_runner.infer({"data": frames})`` on uint8 BGR frames of the
  case's frame size.
* ``raw``: a bare ``megenginelite.LiteNetwork`` (the ``cpu`` config is Lite's default config)
  with the same input pre-filled; the timed call is ``forward(); wait()`` and nothing else.
"""

from __future__ import annotations

import time

from mge_harness.bench.inputs import frame_size, image_batch, model_feed
from mge_harness.exporters.poller import work_cpu_time
from mge_harness.exporters.runners import load_network


def time_call(benchmark, grid, target, *args) -> None:
    """Warms ``target`` up, sizes the rounds from the warm-up, then times it with pedantic.

    Under ``--benchmark-disable`` the call runs once, untimed. The CPU time of the timed
    rounds goes into ``extra_info`` next to their wall time (``cpu_s``, ``wall_s``,
    ``cpu_per_wall``): a "1 thread" config whose CPU time exceeds its wall time uses more cores
    than it says.
    """
    if benchmark.disabled:
        benchmark.pedantic(target, args=args)
        return
    warmups = []
    for _ in range(grid.warmup_rounds):
        start = time.perf_counter()
        target(*args)
        warmups.append(time.perf_counter() - start)
    rounds = grid.rounds_for(min(warmups)) if warmups else grid.min_rounds
    clock = CpuClock(target)
    benchmark.pedantic(clock, args=args, rounds=rounds)
    benchmark.extra_info.update(clock.figures())


class CpuClock:
    """Calls ``target`` and sums the CPU time and wall time of the calls (two clock reads per
    call: microseconds against forwards of milliseconds). The CPU time is the process's less
    MegEngine's event poller's (``exporters.poller.work_cpu_time``), which spins at a fifth of
    a core in every process that made an eager tensor and would read as a hidden thread."""

    def __init__(self, target):
        self.target = target
        self.cpu = self.wall = 0.0

    def __call__(self, *args):
        cpu, wall = work_cpu_time(), time.perf_counter()
        try:
            return self.target(*args)
        finally:
            self.wall += time.perf_counter() - wall
            self.cpu += work_cpu_time() - cpu

    def figures(self) -> dict[str, float]:
        if self.wall <= 0:
            return {}
        return {"cpu_s": self.cpu, "wall_s": self.wall, "cpu_per_wall": self.cpu / self.wall}


def time_model(case, manifest, runners, benchmark, grid) -> None:
    runner = runners.lite(case.variant, manifest, case.device)
    runner.set_inputs(
        model_feed(case.variant, manifest, image_batch(case.batch, frame_size(case.variant)))
    )
    time_call(benchmark, grid, runner.run)


def time_e2e(case, manifest, runners, benchmark, grid) -> None:
    runner = runners.images(case.variant, manifest, case.device)
    time_call(benchmark, grid, runner.infer, {"data": image_batch(case.batch, case.frame_size)})


def _forward_wait(network) -> None:
    network.forward()
    network.wait()


def time_raw(case, manifest, runners, benchmark, grid) -> None:
    import megenginelite

    network = megenginelite.LiteNetwork()
    load_network(network, case.variant.path)
    for name, array in model_feed(
        case.variant, manifest, image_batch(case.batch, frame_size(case.variant))
    ).items():
        network.get_io_tensor(name).set_data_by_copy(array)
    time_call(benchmark, grid, _forward_wait, network)


TIMERS = {"model": time_model, "e2e": time_e2e, "raw": time_raw}


def case_info(case, manifest) -> dict:
    """The ``extra_info`` of a case: what ran, where, how; ``status`` "ok" until told otherwise.

    ``device`` is the case's label (``tuned``) when it has one, with the config it resolved
    to in ``device_config``. ``image_size`` ([height, width]) is set whenever the fed input is raw frames: e2e always,
    model/raw for raw-input (fused) variants.
    """
    entry = case.variant
    info = {
        "variant": entry.id,
        "model": manifest.model,
        "preprocessing": entry.preprocessing,
        "fuse_conv_bias_nonlinearity": entry.fuse_conv_bias_nonlinearity,
        "batch": case.batch,
        "device": case.device_label,
        "mode": case.mode,
        "status": "ok",
    }
    if case.label:
        info["device_config"] = case.device
    if case.mode == "e2e" or entry.is_raw_input:
        info["image_size"] = list(case.frame_size)
    return info


def throughput(stats, batch: int) -> dict:
    """``per_image_ms`` and ``images_per_s`` from the median round (empty when untimed)."""
    if not stats:
        return {}
    median = stats.stats.median
    return {"per_image_ms": median * 1e3 / batch, "images_per_s": batch / median}
