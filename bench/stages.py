"""Where preprocessing time goes: each recipe on its own, stage by stage.

Every in-graph recipe (``exporters.preprocess.preprocessing_recipe``) is dumped as a
preprocessing-only graph with the release's spec (input ``data``, output ``pixels``) and run in
MegEngine Lite on one thread, fed raw frames like the ``e2e`` benchmarks. The timed call is what
a fused variant pays before its network: ``copy-in`` (``exporters.runners.set_input``, the
runners' zero-copy hand-over of the frame),
``forward(); wait()``, and ``fetch`` (``to_numpy`` of the pixels). Inside the forward, Lite's
profiler gives each operator's time, grouped by operator type (``TypeCvt`` is the cast,
``Dimshuffle`` the transpose, ``ResizeForward``/``IndexingMultiAxisVec`` the resize,
``Elemwise`` the normalisation and blending arithmetic). The host pipeline of external variants
(``exporters.preprocess.HostPipeline``) is broken down the same way: ``cv2.resize``, then
``normalise+NCHW`` (the lookup table and the NCHW copy).

Each stage figure is the median over ``PROFILE_ROUNDS`` profiled rounds, taken apart from the
timed rounds (the profiler's bookkeeping is not in the benchmark). The figures go into the
benchmark's ``extra_info["stages"]`` ({stage: ms}); ``reports.stages`` renders them.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mge_harness.exporters.runners import load_network, set_input

#: The benchmark group of the stage benchmarks.
STAGES_GROUP = "stages"

#: The host pipeline's name among the recipes.
HOST = "host"

#: Recipes broken down: the host pipeline and every in-graph recipe that resizes (the
#: identity-warp recipe crops, so its speed answers no deployment question).
RECIPES = (HOST, "fused", "fused-uint8", "fused-exact")

#: Profiled rounds per recipe (after ``PROFILE_WARMUP`` unprofiled ones; Lite writes the profile
#: JSON after every forward, a few ms each).
PROFILE_ROUNDS = 12
PROFILE_WARMUP = 2

#: What each operator type does in the recipes (the label in the stage breakdown).
OPERATOR_STAGES = {
    "TypeCvt": "cast",
    "Dimshuffle": "transpose",
    "Relayout": "transpose",
    "RelayoutFormat": "transpose",
    "ResizeForward": "resize",
    "WarpPerspectiveForward": "resize",
    "IndexingMultiAxisVec": "resize (gather)",
    "Elemwise": "elemwise",
}


@dataclass(frozen=True)
class StageCase:
    """One recipe at one frame size: ``id`` is the pytest param id."""

    recipe: str
    image_size: tuple[int, int]

    @property
    def id(self) -> str:
        return "stages-{}-{}x{}".format(self.recipe, *self.image_size)


def build_stage_cases(grid) -> list[StageCase]:
    """Every recipe at every e2e frame size of ``grid``."""
    return [StageCase(recipe, tuple(size)) for size in grid.frame_sizes for recipe in RECIPES]


def stage_of(operator_type: str) -> str:
    """The stage label of a Lite operator type; unknown types keep their own name."""
    return OPERATOR_STAGES.get(operator_type, operator_type)


def profile_stages(profile: dict) -> dict[str, float]:
    """{operator type: ms} of one Lite performance profile (``enable_profile_performance``).

    Times are the device (CPU) kernel spans of the operators in execution order; operators that
    take under a microsecond (constants, shape arithmetic) add nothing.
    """
    operators = profile["graph_exec"]["operator"]
    device = profile["profiler"]["device"]
    spans: dict[str, float] = defaultdict(float)
    for op_id in profile["graph_exec"]["comp_seq"]:
        kind = operators[op_id]["type"]
        if kind == "ComputingGraphImpl::CallbackCaller":
            continue  # the output callback: Lite's hand-over, not a preprocessing stage
        for span in device.get(op_id, {}).values():
            spans[kind] += (span["end"] - span["start"]) * 1e3
    return dict(spans)


def median_stages(samples: list[dict[str, float]]) -> dict[str, float]:
    """Per-stage medians of several rounds' {stage: ms} (a stage missing in a round counts 0)."""
    names = list(dict.fromkeys(name for sample in samples for name in sample))
    return {name: float(np.median([s.get(name, 0.0) for s in samples])) for name in names}


class GraphStages:
    """A recipe's preprocessing-only graph in Lite: the timed ``__call__`` and its breakdown."""

    def __init__(self, recipe: str, spec, folder: Path, frames: np.ndarray):
        from mge_harness.exporters.export import dump_preprocessing

        self.recipe = recipe
        self.frames = np.ascontiguousarray(frames)
        self.path = Path(folder) / f"{recipe}.mge"
        self.folder = Path(folder)
        dump_preprocessing(spec, self.path, recipe)
        self._network, self._input, self._output = self._load(profile=None)

    def _load(self, profile: Path | None):
        import megenginelite as lite

        network = lite.LiteNetwork()
        if profile is not None:
            network.enable_profile_performance(str(profile))
        load_network(network, self.path)
        return network, network.get_io_tensor("data"), network.get_io_tensor("pixels")

    def __call__(self) -> None:
        set_input(self._input, self.frames)
        self._network.forward()
        self._network.wait()
        self._output.to_numpy()

    def stages(self, rounds: int = PROFILE_ROUNDS) -> dict[str, float]:
        """{stage: median ms}: copy-in, each operator type of the forward, fetch."""
        profile = self.folder / f"{self.recipe}.profile.json"
        network, data, pixels = self._load(profile)
        samples = []
        for index in range(PROFILE_WARMUP + rounds):
            start = time.perf_counter()
            set_input(data, self.frames)
            copied = time.perf_counter()
            network.forward()
            network.wait()
            done = time.perf_counter()
            pixels.to_numpy()
            fetched = time.perf_counter()
            if index < PROFILE_WARMUP:
                continue
            sample = {"copy-in": (copied - start) * 1e3}
            sample.update(profile_stages(json.loads(profile.read_text())))
            sample["fetch"] = (fetched - done) * 1e3
            samples.append(sample)
        return median_stages(samples)


class HostStages:
    """The host pipeline of external variants, timed whole and broken into its two passes."""

    recipe = HOST

    def __init__(self, spec, frames: np.ndarray):
        from mge_harness.exporters.preprocess import HostPipeline

        self.pipeline = HostPipeline(spec)
        self.frames = frames

    def __call__(self) -> None:
        self.pipeline(self.frames)

    def stages(self, rounds: int = PROFILE_ROUNDS) -> dict[str, float]:
        samples = []
        for index in range(PROFILE_WARMUP + rounds):
            start = time.perf_counter()
            resized = self.pipeline.resize(self.frames)
            middle = time.perf_counter()
            self.pipeline.normalise(resized)
            end = time.perf_counter()
            if index >= PROFILE_WARMUP:
                samples.append(
                    {"cv2.resize": (middle - start) * 1e3, "normalise+NCHW": (end - middle) * 1e3}
                )
        return median_stages(samples)


def stage_runner(case: StageCase, spec, folder: Path, frames: np.ndarray):
    """The timed callable of ``case`` (with a ``stages()`` breakdown)."""
    if case.recipe == HOST:
        return HostStages(spec, frames)
    return GraphStages(case.recipe, spec, folder, frames)


def stage_info(case: StageCase, manifest, stages: dict[str, float]) -> dict:
    """``extra_info`` of a stage benchmark: what ran, and the breakdown ({stage: ms})."""
    return {
        "variant": f"{manifest.model}.{case.recipe}.stages",
        "model": manifest.model,
        "preprocessing": case.recipe,
        "batch": 1,
        "device": "cpu",
        "mode": "stages",
        "image_size": list(case.image_size),
        "stages": stages,
        "stage_of": {name: stage_of(name) for name in stages},
        "status": "ok",
    }
