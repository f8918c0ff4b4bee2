"""The gate's checks: what each compares, when it applies, and the runners it needs.

A check turns a batch of raw uint8 BGR images into two outputs, ``ref`` and ``out``, that must
agree under the check's tolerance (:mod:`equivalence.tolerances`). ``Gate.run`` does one
comparison; the pytest module (``test_gate.py``), ``python -m equivalence.reproduce`` and
``python -m equivalence.noise`` all go through it, so they cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from equivalence.compare import CompareResult, compare
from equivalence.tolerances import CHECKS, ToleranceTable
from exporters.errors import HarnessError
from exporters.manifest import Manifest, VariantEntry

#: Preprocessings whose in-graph pipeline the eager runner can replay.
_EAGER_PREPROCESSINGS = ("external", "fused")


class RunnerPool:
    """Activated runners of one release, each loaded once per process and shared by all checks."""

    def __init__(self, manifest: Manifest):
        self.manifest = manifest
        self._runners: dict[tuple, object] = {}
        self._module = None

    def _get(self, key: tuple, make: Callable[[], object]):
        if key not in self._runners:
            runner = make()
            runner.activate()
            self._runners[key] = runner
        return self._runners[key]

    def image(self, entry: VariantEntry, device: str = "cpu"):
        """The raw-image runner of ``entry`` (host OpenCV in front of external variants)."""
        from exporters.runners import image_runner

        return self._get(
            ("image", entry.id, device), lambda: image_runner(entry, self.manifest, device)
        )

    def reference(self):
        """The reference pipeline: OpenCV preprocessing + the manifest's reference variant."""
        return self.image(self.manifest.reference_variant())

    def eager(self, fused: bool):
        """The eager module of a built-in model; fed raw images when ``fused``, else float NCHW."""
        from exporters.release import builtin_module
        from exporters.runners import EagerRunner

        if self._module is None:  # building calibrates BatchNorm: seconds for ResNet18
            self._module = builtin_module(self.manifest.model)
        spec = self.manifest.preprocess if fused else None
        return self._get(("eager", fused), lambda: EagerRunner(self._module, fused=spec))

    def close(self) -> None:
        for runner in self._runners.values():
            runner.deactivate()
        self._runners.clear()


def only_output(outputs: dict[str, np.ndarray], runner) -> np.ndarray:
    """The single output of a classifier runner (the harness contract: one logits output)."""
    if len(outputs) != 1:
        raise HarnessError(f"{runner.name}: expected one output (logits), got {sorted(outputs)}")
    return next(iter(outputs.values()))


def _infer(runner, images: np.ndarray) -> np.ndarray:
    return only_output(runner.infer({"data": images}), runner)


# --- the checks: each maps (pool, entry, images) to (ref, out) ------------------------------


def _reference(pool: RunnerPool, entry: VariantEntry, images: np.ndarray):
    return _infer(pool.reference(), images), _infer(pool.image(entry), images)


def _fuse(pool: RunnerPool, entry: VariantEntry, images: np.ndarray):
    twin = fuse_twin(pool.manifest, entry)
    return _infer(pool.image(twin), images), _infer(pool.image(entry), images)


def _eager(pool: RunnerPool, entry: VariantEntry, images: np.ndarray):
    from exporters.preprocess import reference_preprocess

    if entry.is_raw_input:
        ref = _infer(pool.eager(fused=True), images)
    else:
        ref = _infer(
            pool.eager(fused=False), reference_preprocess(images, pool.manifest.preprocess)
        )
    return ref, _infer(pool.image(entry), images)


def _batch(pool: RunnerPool, entry: VariantEntry, images: np.ndarray):
    runner = pool.image(entry)
    alone = np.concatenate([_infer(runner, images[i : i + 1]) for i in range(len(images))])
    return alone, _infer(runner, images)


def _determinism(pool: RunnerPool, entry: VariantEntry, images: np.ndarray):
    # Another input in between: a network whose state drifts (seen with fp16 I/O on CPU) or
    # leaks the previous input fails here, not only one that is random.
    runner = pool.image(entry)
    first = _infer(runner, images)
    _infer(runner, 255 - images[:1])
    return first, _infer(runner, images)


def _device(pool: RunnerPool, entry: VariantEntry, images: np.ndarray):
    return _infer(pool.image(entry, "cpu"), images), _infer(pool.image(entry, "cuda"), images)


@dataclass(frozen=True)
class Check:
    """One kind of comparison. ``min_batch`` is the smallest batch its images need.

    ``share`` is the share of the Hypothesis profile's ``max_examples`` the check runs (at
    least ``MIN_EXAMPLES``): the network always sees the model's input size, so whether batch
    size, a repeated run or the eager module change the numbers hardly depends on the image;
    where the preprocessing differs (reference), every example counts.
    """

    name: str
    outputs: Callable[[RunnerPool, VariantEntry, np.ndarray], tuple[np.ndarray, np.ndarray]]
    min_batch: int = 1
    share: float = 1.0

    @property
    def description(self) -> str:
        return CHECKS[self.name]

    def max_examples(self, profile_examples: int) -> int:
        return max(MIN_EXAMPLES, math.ceil(self.share * profile_examples))


MIN_EXAMPLES = 3


GATE_CHECKS: dict[str, Check] = {
    c.name: c
    for c in (
        Check("reference", _reference),
        Check("fuse", _fuse, share=0.5),
        Check("eager", _eager, share=0.25),
        Check("batch", _batch, min_batch=2, share=0.25),
        Check("determinism", _determinism, share=0.2),
        Check("device", _device, share=0.5),
    )
}
assert set(GATE_CHECKS) == set(CHECKS), "every check needs a tolerance and vice versa"


def examples(check: str) -> int:
    """How many examples ``check`` runs under the loaded Hypothesis profile."""
    from hypothesis import settings

    return GATE_CHECKS[check].max_examples(settings.default.max_examples)


def fuse_twin(manifest: Manifest, entry: VariantEntry) -> VariantEntry | None:
    """The variant that differs from ``entry`` only by conv-bias fusion being off."""
    for other in manifest.variants:
        same_input = other.preprocessing == entry.preprocessing and other.input == entry.input
        if same_input and not other.fuse_conv_bias_nonlinearity and other.id != entry.id:
            return other
    return None


def has_eager_module(manifest: Manifest) -> bool:
    """True for releases of a built-in model exported by this harness (same weights)."""
    from exporters.zoo import BUILTIN_MODELS, builtin_spec

    if manifest.extra.get("builtin") is not True or manifest.model not in BUILTIN_MODELS:
        return False
    return manifest.extra.get("fingerprint") == builtin_spec(manifest.model).fingerprint


def skip_reason(check: str, manifest: Manifest, entry: VariantEntry) -> str | None:
    """Why ``check`` does not apply to ``entry`` (None when it does); known without running."""
    if check == "reference" and entry == manifest.reference_variant():
        return "this variant is the reference pipeline's own model"
    if check == "fuse":
        if not entry.fuse_conv_bias_nonlinearity:
            return "fusion is off: this variant is the baseline of the fuse check"
        if fuse_twin(manifest, entry) is None:
            return f"no fusion-off variant with {entry.preprocessing!r} preprocessing to compare"
    if check == "eager":
        if not has_eager_module(manifest):
            return f"model {manifest.model!r} is not a built-in: no eager module to compare with"
        if entry.preprocessing not in _EAGER_PREPROCESSINGS:
            return f"the eager runner has no {entry.preprocessing!r} preprocessing to replay"
    return None


def runtime_skip_reason(check: str) -> str | None:
    """Why ``check`` cannot run on this machine (None when it can); needs MegEngine."""
    if check == "device":
        from exporters.devices import cuda_skip_reason

        return cuda_skip_reason()
    return None


class Gate:
    """Runs checks on one release: a manifest, its runners and the tolerance table."""

    def __init__(self, manifest: Manifest, tolerances: ToleranceTable | None = None):
        self.manifest = manifest
        self.tolerances = tolerances or ToleranceTable()
        self.tolerances.check_variants({e.id for e in manifest.variants})
        self.pool = RunnerPool(manifest)

    def run(self, check: str, variant_id: str, images: np.ndarray) -> CompareResult:
        """Compares the two outputs of ``check`` for ``variant_id`` on ``images``."""
        entry = self.manifest.variant(variant_id)
        ref, out = GATE_CHECKS[check].outputs(self.pool, entry, images)
        return compare(ref, out, self.tolerances.lookup(check, variant_id))

    def validate(self) -> None:
        """Loads every variant and runs it once on a grey image at the model's input size.

        Turns what a broken release does at load or first run (truncated or foreign ``.mge``,
        a graph whose input is not what the manifest says) into one-line HarnessErrors, before
        any check starts. Also warms the networks up.
        """
        height, width = self.manifest.preprocess.size
        probe = np.full((1, height, width, 3), 128, np.uint8)
        for entry in self.manifest.variants:
            runner = self.pool.image(entry)
            try:
                _infer(runner, probe)
            except RuntimeError as err:
                first = (str(err).strip().splitlines() or ["unknown error"])[0][:160]
                raise HarnessError(
                    f"{entry.path}: fails on a {entry.input.dtype} {entry.input.layout} input "
                    f"named {entry.input.name!r}, as manifest.json declares ({first})"
                ) from None

    def close(self) -> None:
        self.pool.close()
