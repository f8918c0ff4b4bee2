"""The gate's checks: what each compares, when it applies, and the runners it needs.

A check turns a batch of raw uint8 BGR images into two outputs, ``ref`` and ``out``, that must
agree under the check's tolerance (:mod:`equivalence.tolerances`). ``Gate.run`` does one
comparison; the pytest module (``test_gate.py``), ``python -m equivalence.reproduce`` and
``python -m equivalence.noise`` all go through it, so they cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace

import numpy as np

from equivalence.compare import CompareResult, compare
from equivalence.photos import photo_groups, same_top1
from equivalence.tolerances import CHECKS, ToleranceTable
from exporters.errors import HarnessError
from exporters.manifest import Manifest, VariantEntry

#: Preprocessings the eager runner can replay: external (float NCHW in) and every in-graph
#: recipe, each replayed as exported (so identity-warp's eager module crops too).
_EAGER_PREPROCESSINGS = ("external", "fused", "fused-fast", "identity-warp")

#: Checks that compare a variant with the reference pipeline (skipped for its own variant).
_AGAINST_REFERENCE = ("reference", "photos")


class RunnerPool:
    """Activated runners of one release, each loaded once per process and shared by all checks."""

    def __init__(self, manifest: Manifest):
        self.manifest = manifest
        self._runners: dict[tuple, object] = {}
        self._module = None
        #: Ids of variants that crashed or hung in a probe: never loaded in this process.
        self.blocked: frozenset[str] = frozenset()

    def _get(self, key: tuple, make: Callable[[], object]):
        if key not in self._runners:
            runner = make()
            runner.activate()
            self._runners[key] = runner
        return self._runners[key]

    def image(self, entry: VariantEntry, device: str = "cpu"):
        """The raw-image runner of ``entry`` (host OpenCV in front of external variants)."""
        from exporters.runners import image_runner

        if entry.id in self.blocked:
            raise HarnessError(f"{entry.id} crashed or hung in its probe; it is not loaded here")
        return self._get(
            ("image", entry.id, device), lambda: image_runner(entry, self.manifest, device)
        )

    def reference(self):
        """The reference pipeline: OpenCV preprocessing + the manifest's reference variant."""
        return self.image(self.manifest.reference_variant())

    def eager(self, preprocessing: str):
        """The eager module of a built-in model: fed float NCHW for "external", else raw images
        through the eager replay of that in-graph preprocessing recipe."""
        from exporters.release import builtin_module
        from exporters.runners import EagerRunner

        if self._module is None:  # building calibrates BatchNorm: seconds for ResNet18
            self._module = builtin_module(self.manifest.model)
        spec = None if preprocessing == "external" else self.manifest.preprocess
        return self._get(
            ("eager", preprocessing),
            lambda: EagerRunner(self._module, fused=spec, recipe=preprocessing),
        )

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

    eager = pool.eager(entry.preprocessing)
    if entry.is_raw_input:
        ref = _infer(eager, images)
    else:
        ref = _infer(eager, reference_preprocess(images, pool.manifest.preprocess))
    return ref, _infer(pool.image(entry), images)


def _exact_reference(pool: RunnerPool, images: np.ndarray) -> np.ndarray:
    """The reference pipeline with an exact (float) resize instead of OpenCV's uint8 one."""
    from exporters.preprocess import reference_preprocess

    model = pool.reference().inner  # the reference variant's Lite runner, without OpenCV
    return _infer(model, reference_preprocess(images, pool.manifest.preprocess, exact=True))


def _closeness(result: CompareResult) -> tuple[bool, float]:
    return bool(result), result.margin if math.isfinite(result.margin) else -math.inf


def _closest(uint8: CompareResult, exact: CompareResult) -> CompareResult:
    """The comparison with the reference the output is closer to: a passing one first, then
    the larger margin; the uint8 pipeline's on a tie."""
    if _closeness(exact) <= _closeness(uint8):
        return uint8
    note = "closer to the exact-resize reference (float cv2.resize)"
    return replace(exact, detail="; ".join(filter(None, (note, exact.detail))))


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

    ``either_resize``: the output is compared with the reference pipeline twice, once as
    serving code resizes (OpenCV on the uint8 image: fixed-point weights, rounded) and once
    with the exact bilinear values (OpenCV on a float32 copy), and the closer comparison counts.
    Both resizes are correct; they differ by up to 0.76 grey levels, which a trained model
    turns into up to 3 logits (EfficientNet-Lite0, 1x2 images), so no single reference could
    keep a tight tolerance for the external variants (uint8 resize, bitwise equal to the first)
    and the fused ones (exact resize, within 6e-5 levels of the second) at once.

    ``fixed``, when set, gives the check's own inputs instead of Hypothesis's: labelled batches
    (objects with ``label`` and ``images``), each run once (the photo set). ``same_top1`` adds
    the photo check's top-1 rule to the comparison (``equivalence.photos.same_top1``); it needs
    ``either_resize``.
    """

    name: str
    outputs: Callable[[RunnerPool, VariantEntry, np.ndarray], tuple[np.ndarray, np.ndarray]]
    min_batch: int = 1
    share: float = 1.0
    either_resize: bool = False
    fixed: Callable[[], Sequence] | None = None
    same_top1: bool = False

    def __post_init__(self):
        if self.same_top1 and not self.either_resize:
            raise ValueError(f"check {self.name!r}: same_top1 needs either_resize")

    @property
    def description(self) -> str:
        return CHECKS[self.name]

    def max_examples(self, profile_examples: int) -> int:
        return max(MIN_EXAMPLES, math.ceil(self.share * profile_examples))


MIN_EXAMPLES = 3


GATE_CHECKS: dict[str, Check] = {
    c.name: c
    for c in (
        Check("reference", _reference, either_resize=True),
        Check("fuse", _fuse, share=0.5),
        Check("eager", _eager, share=0.25),
        Check("batch", _batch, min_batch=2, share=0.25),
        Check("determinism", _determinism, share=0.2),
        Check("device", _device, share=0.5),
        Check("photos", _reference, either_resize=True, fixed=photo_groups, same_top1=True),
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
    if check in _AGAINST_REFERENCE and entry == manifest.reference_variant():
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
        kind = GATE_CHECKS[check]
        tolerance = self.tolerances.lookup(check, variant_id)
        ref, out = kind.outputs(self.pool, entry, images)
        result = compare(ref, out, tolerance)
        if not kind.either_resize:
            return result
        exact = _exact_reference(self.pool, images)
        result = _closest(result, compare(exact, out, tolerance))
        return same_top1(result, ref, out, exact) if kind.same_top1 else result

    def validate(self, skip: Collection[str] = ()) -> None:
        """Loads every variant and runs it once on a grey image at the model's input size.

        Turns what a broken release does at load or first run (truncated or foreign ``.mge``,
        a graph whose input is not what the manifest says) into one-line HarnessErrors, before
        any check starts. Also warms the networks up. Variants whose ids are in ``skip`` (those
        that crashed or hung in a probe) are not loaded.
        """
        self.pool.blocked = frozenset(skip)
        height, width = self.manifest.preprocess.size
        probe = np.full((1, height, width, 3), 128, np.uint8)
        for entry in self.manifest.variants:
            if entry.id in skip:
                continue
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
