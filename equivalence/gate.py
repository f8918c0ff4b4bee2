"""Running the gate's checks on one release: its runners, loaded once, and one comparison.

``Gate.run(check, variant_id, images)`` is the one comparison every caller goes through: the
pytest module, ``python -m equivalence.reproduce`` and ``python -m equivalence.noise``. What each
check compares lives in its record (:mod:`equivalence.checks`).
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import replace

import numpy as np

from mge_harness.equivalence.checks import GATE_CHECKS, infer, one_by_one
from mge_harness.equivalence.compare import CompareResult, compare_outputs
from mge_harness.equivalence.photos import same_top1
from mge_harness.equivalence.tolerances import ToleranceTable
from mge_harness.exporters.errors import HarnessError, first_line
from mge_harness.exporters.manifest import Manifest, VariantEntry
from mge_harness.exporters.outputs import logits_names

#: How many bytes of reference outputs a RunnerPool keeps (``RunnerPool.memoized``): 20 batches
#: of four 1000-class logits are 0.3 MB, so this bounds only models with large outputs.
MEMO_BYTES = 64 * 2**20


class RunnerPool:
    """Activated runners of one release, each loaded once per process and shared by all checks,
    and the reference side's outputs for the batches seen (``memoized``)."""

    def __init__(self, manifest: Manifest, memo_bytes: int = MEMO_BYTES):
        self.manifest = manifest
        self._runners: dict[tuple, object] = {}
        self._module = None
        #: Ids of variants that crashed or hung in a probe: never loaded in this process.
        self.blocked: frozenset[str] = frozenset()
        self._memo: OrderedDict[tuple, dict[str, np.ndarray]] = OrderedDict()
        self._memo_bytes, self._memo_limit = 0, memo_bytes
        self.memo_hits = self.memo_misses = 0

    def memoized(self, what: tuple, images: np.ndarray, compute: Callable[[], dict]) -> dict:
        """``compute()``, the outputs of a pipeline every variant is compared with (``what``
        names it: the reference pipeline, its exact-resize form, the eager module), kept for
        these exact ``images``: the checks of every variant see the same batches (the ci
        profile is derandomized), so the reference side is computed once per batch, not once
        per variant. The kept arrays are read-only; least recently used ones are dropped past
        ``memo_bytes``."""
        pixels = np.ascontiguousarray(images)
        digest = hashlib.blake2b(pixels.data, digest_size=16).digest()
        key = (what, pixels.shape, pixels.dtype.str, digest)
        if key in self._memo:
            self._memo.move_to_end(key)
            self.memo_hits += 1
            return self._memo[key]
        self.memo_misses += 1
        outputs = compute()
        for array in outputs.values():
            array.flags.writeable = False
        self._memo[key] = outputs
        self._memo_bytes += sum(a.nbytes for a in outputs.values())
        while self._memo_bytes > self._memo_limit and len(self._memo) > 1:
            _, dropped = self._memo.popitem(last=False)
            self._memo_bytes -= sum(a.nbytes for a in dropped.values())
        return outputs

    def _get(self, key: tuple, make: Callable[[], object]):
        if key not in self._runners:
            runner = make()
            runner.activate()
            self._runners[key] = runner
        return self._runners[key]

    def image(self, entry: VariantEntry, device: str = "cpu"):
        """The raw-image runner of ``entry`` (host OpenCV in front of external variants)."""
        from mge_harness.exporters.runners import image_runner

        if entry.id in self.blocked:
            raise HarnessError(f"{entry.id} crashed or hung in its probe; it is not loaded here")
        return self._get(
            ("image", entry.id, device), lambda: image_runner(entry, self.manifest, device)
        )

    def reference(self):
        """The reference pipeline: OpenCV preprocessing + the manifest's reference variant."""
        return self.image(self.manifest.reference_variant())

    def reference_model(self):
        """The reference variant's Lite runner alone (fed float32 NCHW), without OpenCV."""
        return self.reference().model

    def eager_module(self):
        """The eager module the release was traced from (``exporters.release.eager_module``),
        built once: a built-in calibrates BatchNorm (seconds for ResNet18); a user's model is
        rebuilt from its factory and weights."""
        from mge_harness.exporters.release import eager_module

        if self._module is None:
            self._module = eager_module(self.manifest)
        return self._module

    def eager(self, preprocessing: str):
        """The eager module: fed float NCHW for "external", else raw images through the eager
        replay of that in-graph preprocessing recipe."""
        from mge_harness.exporters.runners import EagerRunner

        self.eager_module()
        spec = None if preprocessing == "external" else self.manifest.preprocess
        return self._get(
            ("eager", preprocessing),
            lambda: EagerRunner(self._module, fused=spec, recipe=preprocessing),
        )

    def close(self) -> None:
        for runner in self._runners.values():
            runner.deactivate()
        self._runners.clear()


def fixed_size_notes(manifest: Manifest) -> list[str]:
    """Headline notes for raw-input variants whose ``input.shape`` fixes the image size: the
    gate feeds them only that size, so their resize never runs at any other."""
    notes = []
    for entry in manifest.variants:
        if entry.fixed_size is None:
            continue
        height, width = entry.fixed_size
        resize = (
            "its in-graph resize is the identity there and was never checked"
            if entry.fixed_size == tuple(manifest.preprocess.size)
            else "its in-graph resize was checked at that size only"
        )
        notes.append(
            f"{entry.id} takes only {height}x{width} images (input.shape): it was fed only "
            f"those (photos scaled to it first); {resize}"
        )
    return notes


def _exact_reference(pool: RunnerPool, images: np.ndarray) -> np.ndarray:
    """The reference pipeline with an exact (float) resize instead of OpenCV's uint8 one."""
    from mge_harness.exporters.preprocess import reference_preprocess

    def compute():
        batch = reference_preprocess(images, pool.manifest.preprocess, exact=True)
        return infer_model(pool.reference_model(), batch)

    return pool.memoized(("exact-reference",), images, compute)


def infer_model(model, batch: np.ndarray) -> dict[str, np.ndarray]:
    """The outputs of a Lite runner fed its own (float32 NCHW) input."""
    name = model.input_spec.name if model.input_spec else "data"
    return model.infer({name: batch})


def _closeness(result: CompareResult) -> tuple[bool, float]:
    return bool(result), result.margin if math.isfinite(result.margin) else -math.inf


def _closest(uint8: CompareResult, exact: CompareResult) -> CompareResult:
    """The comparison with the reference the output is closer to: a passing one first, then
    the larger margin; the uint8 pipeline's on a tie."""
    if _closeness(exact) <= _closeness(uint8):
        return uint8
    note = "closer to the exact-resize reference (float cv2.resize)"
    return replace(exact, detail="; ".join(filter(None, (note, exact.detail))))


class Gate:
    """Runs checks on one release: a manifest, its runners and the tolerance table."""

    def __init__(self, manifest: Manifest, tolerances: ToleranceTable | None = None):
        self.manifest = manifest
        self.tolerances = tolerances or ToleranceTable()
        self.tolerances.check_variants({e.id for e in manifest.variants})
        self.pool = RunnerPool(manifest)
        #: Headline notes found by ``validate`` (input sensitivity).
        self.notes: list[str] = []
        self._distinct_outputs = None
        self._scales = None

    def run(self, check: str, variant_id: str, images: np.ndarray) -> CompareResult:
        """Compares the two outputs of ``check`` for ``variant_id`` on ``images``."""
        entry = self.manifest.variant(variant_id)
        kind = GATE_CHECKS[check]
        tolerance = self.tolerances.lookup(check, variant_id)
        ref, out = kind.outputs(self.pool, entry, images)
        logits = logits_names(self.manifest.outputs, {n: np.shape(v) for n, v in ref.items()})
        scales = self.scales
        result = compare_outputs(ref, out, tolerance, logits, scales)
        if kind.rule is not None and len(logits) == 1 and set(out) == set(ref):
            [name] = logits
            result = kind.rule(result, ref[name], out[name])
        if not kind.either_resize:
            return result
        exact = _exact_reference(self.pool, images)
        result = _closest(result, compare_outputs(exact, out, tolerance, logits, scales))
        if not kind.same_top1 or len(logits) != 1 or set(out) != set(ref):
            return result  # the top-1 rule is for class scores
        [name] = logits
        return same_top1(result, ref[name], out[name], exact[name])

    def validate(self, skip: Collection[str] = ()) -> None:
        """Loads every variant and runs it once on a grey image at the model's input size.

        Turns what a broken release does at load or first run (truncated or foreign ``.mge``,
        a graph whose input is not what the manifest says) into one-line HarnessErrors, before
        any check starts. Also warms the networks up. Variants whose ids are in ``skip`` (those
        that crashed or hung in a probe) are not loaded.
        """
        self.pool.blocked = frozenset(skip)
        if self.manifest.source is not None:  # a user's factory: one line if it cannot build
            self.pool.eager_module()
        self.validate_tuned()
        for entry in self.manifest.variants:
            if entry.id in skip:
                continue
            runner = self.pool.image(entry)
            height, width = entry.fixed_size or self.manifest.preprocess.size
            try:
                infer(runner, np.full((1, height, width, 3), 128, np.uint8))
            except RuntimeError as err:
                raise HarnessError(
                    f"{entry.path}: fails on a {entry.input.dtype} {entry.input.layout} input "
                    f"named {entry.input.name!r}, as manifest.json declares ({first_line(err)})"
                ) from None
        self.notes = fixed_size_notes(self.manifest)
        if self.manifest.reference_variant().id not in skip:
            self.notes += self.input_sensitivity()

    def validate_tuned(self) -> None:
        """A ``tuned.json`` in the release folder is part of the release: one that cannot be read,
        or whose recommendations are not LiteOptions, is a one-line HarnessError before any
        check (the ``tuned`` check would fail on it for every variant and example)."""
        from mge_harness.equivalence.checks import TUNED_FILE
        from mge_harness.exporters.tuned import load_tuned, tuned_device_config

        path = self.manifest.root / TUNED_FILE
        if not path.exists():
            return
        for variant_id, record in load_tuned(path)["variants"].items():
            recommended = record.get("recommended") if isinstance(record, dict) else None
            if recommended is not None and variant_id in {e.id for e in self.manifest.variants}:
                tuned_device_config(path, variant_id)

    def input_sensitivity(self) -> list[str]:
        """Refuses a release whose reference outputs do not depend on the input
        (``equivalence.sensitivity``); returns headline notes."""
        from mge_harness.equivalence.checks import has_eager_module
        from mge_harness.equivalence.sensitivity import check_input_sensitivity
        from mge_harness.exporters.preprocess import reference_preprocess

        spec = self.manifest.preprocess
        eager = None
        if has_eager_module(self.manifest):

            def eager(images):
                return infer(self.pool.eager("external"), reference_preprocess(images, spec))

        images, outputs, alone = self._distinct()
        return check_input_sensitivity(outputs, images, eager, str(self.manifest.root), alone)

    def _distinct(self):
        """The distinct images (``equivalence.sensitivity``), the reference's outputs on them
        as one batch and one image at a time, computed once."""
        if self._distinct_outputs is None:
            from mge_harness.equivalence.sensitivity import distinct_images

            images = distinct_images(self.manifest.preprocess.size)
            reference = self.pool.reference()
            outputs = infer(reference, images)
            self._distinct_outputs = images, outputs, one_by_one(reference, images, outputs)
        return self._distinct_outputs

    @property
    def scales(self):
        """Each reference output's mean and between-image spread: the scale-free rule's scale."""
        if self._scales is None:
            from mge_harness.equivalence.sensitivity import output_scales

            if self.manifest.reference_variant().id in self.pool.blocked:
                self._scales = {}  # the reference crashed in its probe: elementwise rule only
            else:
                _, outputs, alone = self._distinct()
                self._scales = output_scales(outputs, alone)
        return self._scales

    def close(self) -> None:
        self.pool.close()
