"""The gate's checks: one record per check, and everything else derives from this registry.

A check turns a batch of raw uint8 BGR images into two outputs, ``ref`` and ``out``, that must
agree under the check's tolerance. Each :class:`Check` says, in one place, what it compares
(``description``), its default tolerance (measured, table below), which other variant it loads
(``needs``), when it does not apply (``skip_reason``) or cannot run here (``runtime_skip``),
how a variant's ``expected_failure`` marks it, and how many examples it runs. The tolerance
table (:mod:`equivalence.tolerances`), crash isolation (:mod:`equivalence.isolation`), the pytest
plugin and the test module (``test_gate.py``, one test per record) read it; ``Gate.run``
(:mod:`equivalence.gate`) does one comparison for the tests, ``python -m equivalence.reproduce``
and ``python -m equivalence.noise``, so they cannot drift apart. Adding a check touches this
module and a test.

Default tolerances come from the noise measured between CORRECT variants with
``python -m equivalence.noise`` (Hypothesis-targeted at the largest error; two runs of 100
examples per check and variant for resnet18, two of 200 for tiny, one of 100 for the
ImageNet-trained efficientnet_lite0; worst of the runs below; photos: its 12 batches once, the
shipped set of 2026-12-03, margins including the scale-free rule's).
margin = 1 - max |out - ref| / (atol + rtol * |ref|) under these defaults, the worst seen:

| check       | model    | worst max abs | worst atol needed (rtol) | worst 1 - cosine | margin |
|-------------|----------|---------------|--------------------------|------------------|--------|
| reference   | resnet18 | 0.0127        | 2.14e-3 (0.01)           | 3.4e-9           | 0.994  |
| reference   | lite0    | 1.28e-3       | 6.9e-4 (0.01)            | 7.8e-8           | 0.999  |
| reference   | tiny     | 5.66e-4       | 0 (0.01)                 | 1.3e-8           | 1.000  |
| photos      | resnet18 | 5.72e-5       | 2.75e-6 (0.01)           | 5.8e-12          | 0.998  |
| photos      | lite0    | 6.2e-6        | 0 (0.01)                 | 6.7e-13          | 0.998  |
| photos      | tiny     | 4.29e-6       | 0 (0.01)                 | 9.1e-14          | 0.999  |
| fuse        | all      | 0 (bitwise)   | 0                        | 0                | 1      |
| eager       | resnet18 | 6.56e-4       | 3.69e-4 (1e-4)           | 3.3e-11          | 0.56   |
| eager       | lite0    | 7.92e-5       | 4.45e-5 (1e-4)           | 1.8e-10          | 0.94   |
| eager       | tiny     | 1.72e-5       | 1.2e-6 (1e-4)            | 5.2e-13          | 0.99   |
| batch       | resnet18 | 1.22e-4       | 1.24e-5 (1e-4)           | 9.3e-14          | 0.75   |
| batch       | tiny     | 5.72e-6       | 4.6e-7 (1e-4)            | 1.1e-13          | 0.99   |
| determinism | both     | 0 (bitwise)   | 0                        | 0                | 1      |

reference and photos compare with the closer of two correct reference pipelines (OpenCV on
the uint8 image, and on a float32 copy: the exact bilinear values; see ``Check.either_resize``).
Against the uint8 one alone the fused graphs (exact resize) differed by up to half a grey level
per pixel (a 1-pixel checkerboard downscaled 2x: 127.5 against 128), which random-weight
ResNet18 turned into 0.96 on logits of magnitude 10-100 (margin 0.62) and the trained
EfficientNet-Lite0 into 3.02, 1 - cosine 0.307 (1x2 and 3x1 images; margin -0.47), and 0.71,
1 - cosine 0.0127 on a photo upscaled from 107x160: no tolerance general enough for that would
catch align_corners=True on Lite0's photos. The defaults were kept, not tightened: they were set
on random weights and the margins above leave room. Planted preprocessing bugs miss by 5 to 250
(README). fuse/batch/eager: float reassociation only (other kernels or batch shapes).
determinism is exact: the same network on the same input must repeat bit for bit.
tuned: the configuration a release's ``tuned.json`` recommends (other kernels and layouts:
reassociation only), so the eager check's tolerance; measured with a ``tuned.json`` naming
``cpu-nchw88`` for every variant (the only candidate config that is not bitwise equal to the
default here), 2026-12 on the 2-core Xeon (AVX-512), worst over the four float variants:

| model (tuned: cpu-nchw88)                 | examples | worst max abs | worst 1 - cosine | margin |
|-------------------------------------------|----------|---------------|------------------|--------|
| resnet18                                  | 40       | 2.59e-4       | 3.7e-11          | 0.853  |
| efficientnet_lite0                        | 40       | 2.76e-5       | 4.2e-11          | 0.973  |
| tiny                                      | 100      | 1.53e-5       | 4.8e-13          | 0.988  |
| detect_net (tests/userzoo.py, boxes in px) | 60       | 1.22e-4       | 6.1e-14          | 0.992  |
| resnet18, tuned: cpu-nchw44 (ran here)    | 30       | 3.05e-4       | 1.6e-11          | 0.853  |
 device (CPU
vs CUDA) is NOT measured (no CUDA device on the measuring machine): provisional, 10x the eager
tolerance; measure it with ``python -m equivalence.noise --checks device``.

int8 variants (``--variants int8``) cannot meet these float tolerances: the reference, photos,
fuse and eager checks skip them, and the ``int8`` check judges them by its own rule (cosine,
spread and centred cosine per photo, shares of photos keeping the reference top-1 / having it
in the int8 top 5), measured on tiny, resnet18, efficientnet_lite0 and a user model: the
table and the thresholds' derivation are in ``exporters/int8.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from mge_harness.equivalence.compare import CompareResult, Tolerance
from mge_harness.equivalence.photos import photo_batch, photo_groups
from mge_harness.exporters.errors import HarnessError
from mge_harness.exporters.int8 import (
    INT8_ATOL,
    INT8_CENTRED_COSINE_MIN,
    INT8_COSINE_MIN,
    INT8_SPREAD_RATIO,
    INT8_TOP1_MIN,
    INT8_TOP5_MIN,
    agreement,
)
from mge_harness.exporters.manifest import Manifest, VariantEntry

if TYPE_CHECKING:
    from mge_harness.equivalence.gate import RunnerPool

#: Preprocessings the eager runner can replay: external (float NCHW in) and every in-graph
#: recipe, each replayed as exported (so identity-warp's eager module crops too).
EAGER_PREPROCESSINGS = ("external", "fused", "fused-exact", "fused-fast", "identity-warp")

#: What a check loads besides the variant itself.
NEEDS = ("reference", "fuse-twin")

#: Which variants a check applies to: float32 ones only, int8-quantized ones only, or both.
KINDS = ("float", "int8", "any")

#: How a variant's ``expected_failure`` marks a check: ``strict``, the check must fail (the
#: defect is caught there, else the gate fails); ``may``, the same defect may show there.
EXPECTED_FAILURE_MODES = ("strict", "may")


Outputs = dict[str, np.ndarray]


def infer(runner, images: np.ndarray) -> Outputs:
    """Every output of ``runner`` fed the raw uint8 BGR batch ``images``, by name."""
    return runner.infer({"data": images})


def fuse_twin(manifest: Manifest, entry: VariantEntry) -> VariantEntry | None:
    """The variant that differs from ``entry`` only by conv-bias fusion being off."""
    for other in manifest.variants:
        same_input = other.preprocessing == entry.preprocessing and other.input == entry.input
        if same_input and not other.fuse_conv_bias_nonlinearity and other.id != entry.id:
            return other
    return None


def has_eager_module(manifest: Manifest) -> bool:
    """True when the eager module can be rebuilt: a built-in model exported by this harness
    (same weights), or a ``source`` in the manifest or from ``--eager``."""
    from mge_harness.exporters.release import eager_source

    return eager_source(manifest) is not None


#: The skip reason of the eager check when the release carries no model source; the gate's
#: headline repeats it, since a dump bug shows nowhere else.
NO_EAGER_SOURCE = (
    "eager: not checked, no model source (manifest 'source', or --eager pkg.module:factory "
    "[--weights W]): dump bugs such as F.clip's would go unnoticed"
)


# --- what each check compares: (pool, entry, images) -> (ref, out) -------------------------


def _reference(pool: RunnerPool, entry: VariantEntry, images: np.ndarray):
    ref = pool.memoized(("reference",), images, lambda: infer(pool.reference(), images))
    return ref, infer(pool.image(entry), images)


def _fuse(pool: RunnerPool, entry: VariantEntry, images: np.ndarray):
    twin = fuse_twin(pool.manifest, entry)
    return infer(pool.image(twin), images), infer(pool.image(entry), images)


def _eager(pool: RunnerPool, entry: VariantEntry, images: np.ndarray):
    from mge_harness.exporters.preprocess import reference_preprocess

    def compute():
        eager = pool.eager(entry.preprocessing)
        if entry.is_raw_input:
            return infer(eager, images)
        return infer(eager, reference_preprocess(images, pool.manifest.preprocess))

    ref = pool.memoized(("eager", entry.preprocessing), images, compute)
    return ref, infer(pool.image(entry), images)


def one_by_one(runner, images: np.ndarray, batched: Outputs) -> Outputs:
    """``runner``'s outputs for ``images`` fed one image at a time, stacked like ``batched`` (its
    outputs for the whole batch). An output without a batch axis (a detector's anchors) is the
    same for any batch: the first image's is kept."""
    singles = [infer(runner, images[i : i + 1]) for i in range(len(images))]
    alone = {}
    for name, first in singles[0].items():
        per_image = np.ndim(first) and len(first) == 1 and len(batched.get(name, ())) == len(images)
        alone[name] = np.concatenate([s[name] for s in singles]) if per_image else first
    return alone


def _batch(pool: RunnerPool, entry: VariantEntry, images: np.ndarray):
    runner = pool.image(entry)
    batched = infer(runner, images)
    return one_by_one(runner, images, batched), batched


def _determinism(pool: RunnerPool, entry: VariantEntry, images: np.ndarray):
    # Another input in between: a network whose state drifts (seen with fp16 I/O on CPU) or
    # leaks the previous input fails here, not only one that is random.
    runner = pool.image(entry)
    first = infer(runner, images)
    infer(runner, 255 - images[:1])
    return first, infer(runner, images)


def _device(pool: RunnerPool, entry: VariantEntry, images: np.ndarray):
    return infer(pool.image(entry, "cpu"), images), infer(pool.image(entry, "cuda"), images)


#: The file in the release folder that names each variant's tuned Lite configuration (what
#: ``python -m bench.tune --release DIR`` writes; ``exporters.tuned`` reads it).
TUNED_FILE = "tuned.json"


def _tuned_record(manifest: Manifest, entry: VariantEntry) -> tuple[str | None, str | None]:
    """(config name, None) of the config ``TUNED_FILE`` recommends for ``entry``, or (None,
    why there is nothing to check). A file that is not a tuned document names ``"?"``: the
    check then fails with the file's problem instead of the gate passing it by."""
    from mge_harness.exporters.tuned import load_tuned

    path = manifest.root / TUNED_FILE
    if not path.exists():
        return None, (
            f"no {TUNED_FILE} in the release: no tuned configuration to check "
            "(python -m bench.tune --release DIR writes one)"
        )
    try:
        variants = load_tuned(path)["variants"]
    except HarnessError:
        return "?", None
    if entry.id not in variants:
        return None, f"{TUNED_FILE} has no entry for this variant (bench.tune --variants names it)"
    record = variants[entry.id].get("recommended") if isinstance(variants[entry.id], dict) else 0
    if record is None:
        return None, f"{TUNED_FILE}: its sweep recommends no configuration for this variant"
    name = record.get("config") if isinstance(record, dict) else "?"
    if name == "cpu":
        return None, f"{TUNED_FILE} recommends Lite's default for this variant: nothing to compare"
    return str(name), None


def tuned_config_name(manifest: Manifest, entry: VariantEntry) -> str | None:
    """The ``exporters.devices`` name of the config ``TUNED_FILE`` recommends for ``entry``, or
    None when there is none but Lite's default."""
    return _tuned_record(manifest, entry)[0]


def _tuned(pool: RunnerPool, entry: VariantEntry, images: np.ndarray):
    from mge_harness.exporters.tuned import tuned_device_config

    config = tuned_device_config(pool.manifest.root / TUNED_FILE, entry.id)
    return infer(pool.image(entry), images), infer(pool.image(entry, config), images)


# --- when a check applies ------------------------------------------------------------------


def _eager_applies(manifest: Manifest, entry: VariantEntry) -> str | None:
    if not has_eager_module(manifest):
        return NO_EAGER_SOURCE
    if entry.preprocessing not in EAGER_PREPROCESSINGS:
        return f"the eager runner has no {entry.preprocessing!r} preprocessing to replay"
    return None


def _tuned_applies(manifest: Manifest, entry: VariantEntry) -> str | None:
    return _tuned_record(manifest, entry)[1]


def _int8_skip(check: str, entry: VariantEntry) -> str:
    return (
        f"{entry.id} is int8-quantized: its quantization error is larger than the {check} "
        "check's float tolerance by design; the int8 check judges it against the float reference"
    )


def class_rule(result: CompareResult, ref: np.ndarray, out: np.ndarray) -> CompareResult:
    """``result`` with the int8 rule's class rules added (``exporters.int8``): status
    ``mismatch`` when the share of images (rows of (N, classes) ``ref``) whose reference top-1
    is the int8 top-1 is below ``INT8_TOP1_MIN``, or the share whose reference top-1 is among
    the int8 top 5 is below ``INT8_TOP5_MIN``; ``detail`` gives both shares."""
    if result.status in ("shape", "dtype", "nonfinite") or ref.ndim != 2 or ref.shape[1] < 5:
        return result
    figures = agreement(ref, out)
    top1, top5 = figures["top1"], figures["top1_in_top5"]
    notes = [result.detail] if result.detail else []
    notes.append(
        f"reference top-1 is the int8 top-1 on {top1:.0%} of images (floor {INT8_TOP1_MIN:.0%}), "
        f"in its top 5 on {top5:.0%} (floor {INT8_TOP5_MIN:.0%})"
    )
    failing = top1 < INT8_TOP1_MIN or top5 < INT8_TOP5_MIN
    return replace(result, status="mismatch" if failing else result.status, detail="; ".join(notes))


def _cuda_skip() -> str | None:
    from mge_harness.exporters.devices import cuda_skip_reason

    return cuda_skip_reason()


@dataclass(frozen=True)
class Check:
    """One kind of comparison: every fact about it, in one record.

    ``outputs(pool, entry, images)`` returns ``(ref, out)``; ``tolerance`` is its measured default
    (overridable per run with ``--tolerances``). ``needs`` names the other variant it loads:
    ``"reference"`` (the reference pipeline's variant; the check is skipped for that variant
    itself) or ``"fuse-twin"`` (the fusion-off twin; skipped for fusion-off variants and for
    those without a twin). ``applies(manifest, entry)`` gives any further reason the check does
    not apply (None when it does); ``runtime_skip()`` why it cannot run on this machine.
    ``expected_failure`` says how a variant marked ``expected_failure`` treats the check (see
    ``EXPECTED_FAILURE_MODES``; None: it must still pass).

    ``min_batch`` is the smallest batch its images need. ``share`` is the share of the
    Hypothesis profile's ``max_examples`` the check runs (at least ``MIN_EXAMPLES``): the
    network always sees the model's input size, so whether batch size, a repeated run or the
    eager module change the numbers hardly depends on the image; where the preprocessing
    differs (reference), every example counts.

    ``either_resize``: the output is compared with the reference pipeline twice, once as
    serving code resizes (OpenCV on the uint8 image: fixed-point weights, rounded) and once
    with the exact bilinear values (OpenCV on a float32 copy), and the closer comparison counts.
    Both resizes are correct; they differ by up to 0.76 grey levels, which a trained model
    turns into up to 3 logits (EfficientNet-Lite0, 1x2 images), so no single reference could
    keep a tight tolerance for the external variants (uint8 resize, bitwise equal to the first)
    and the fused ones (exact resize, within 6e-5 levels of the second) at once.

    ``variants`` says which variants the check applies to (``KINDS``): the float checks are
    skipped for int8 variants, with a reason saying the int8 check judges them. ``rule``, when
    set, adds a class rule to the comparison of a single logits output (the int8 check's
    ``class_rule``).

    ``fixed``, when set, gives the check's own inputs instead of Hypothesis's: labelled batches
    (objects with ``label`` and ``images``), each run once (the photo set). ``same_top1`` adds
    the photo check's top-1 rule to the comparison (``equivalence.photos.same_top1``); it needs
    ``either_resize``.

    ``probe_config(manifest, entry)``, when set, names a device config (``exporters.devices``)
    the check loads ``entry`` under besides the default one; crash isolation probes it in a
    child under that config too, since a layout option can segfault where the default runs.
    """

    name: str
    description: str
    tolerance: Tolerance
    outputs: Callable[[RunnerPool, VariantEntry, np.ndarray], tuple[np.ndarray, np.ndarray]]
    needs: str | None = None
    applies: Callable[[Manifest, VariantEntry], str | None] | None = None
    runtime_skip: Callable[[], str | None] | None = None
    expected_failure: str | None = None
    min_batch: int = 1
    share: float = 1.0
    either_resize: bool = False
    fixed: Callable[[], Sequence] | None = None
    same_top1: bool = False
    probe_config: Callable[[Manifest, VariantEntry], str | None] | None = None
    variants: str = "float"
    rule: Callable[[CompareResult, np.ndarray, np.ndarray], CompareResult] | None = None

    def __post_init__(self):
        if self.variants not in KINDS:
            raise ValueError(f"check {self.name!r}: variants must be one of {KINDS}")
        if self.same_top1 and not self.either_resize:
            raise ValueError(f"check {self.name!r}: same_top1 needs either_resize")
        if self.needs not in (None, *NEEDS):
            raise ValueError(f"check {self.name!r}: needs must be one of {NEEDS} or None")
        if self.expected_failure not in (None, *EXPECTED_FAILURE_MODES):
            raise ValueError(f"check {self.name!r}: unknown expected_failure mode")

    def max_examples(self, profile_examples: int) -> int:
        return max(MIN_EXAMPLES, math.ceil(self.share * profile_examples))

    def needed_variants(self, manifest: Manifest, entry: VariantEntry) -> list[VariantEntry]:
        """The variants this check loads for ``entry``: itself, plus what ``needs`` names."""
        needed = [entry]
        if self.needs == "reference":
            needed.append(manifest.reference_variant())
        elif self.needs == "fuse-twin":
            needed.append(fuse_twin(manifest, entry))
        return [other for other in needed if other is not None]

    def skip_reason(self, manifest: Manifest, entry: VariantEntry) -> str | None:
        """Why this check does not apply to ``entry`` (None when it does); known without running."""
        if self.variants == "float" and entry.quantization is not None:
            return _int8_skip(self.name, entry)
        if self.variants == "int8" and entry.quantization != "int8":
            return "not an int8 variant: the float checks judge it"
        if self.needs == "reference" and entry == manifest.reference_variant():
            return "this variant is the reference pipeline's own model"
        if self.needs == "fuse-twin":
            if not entry.fuse_conv_bias_nonlinearity:
                return "fusion is off: this variant is the baseline of the fuse check"
            if fuse_twin(manifest, entry) is None:
                return (
                    f"no fusion-off variant with {entry.preprocessing!r} preprocessing to compare"
                )
        return self.applies(manifest, entry) if self.applies else None


MIN_EXAMPLES = 3

_REFERENCE = Tolerance(atol=2.0, rtol=0.01, cosine_min=0.995)

#: The int8 rule's tolerance (``exporters.int8``: measured table and derivation there).
INT8_TOLERANCE = Tolerance(
    atol=INT8_ATOL,
    rtol=0.0,
    cosine_min=INT8_COSINE_MIN,
    spread_ratio=INT8_SPREAD_RATIO,
    centred_cosine_min=INT8_CENTRED_COSINE_MIN,
)

#: The registry, in report order.
GATE_CHECKS: dict[str, Check] = {
    c.name: c
    for c in (
        Check(
            "reference",
            "the variant fed raw images against the reference pipeline",
            _REFERENCE,
            _reference,
            needs="reference",
            expected_failure="strict",
            either_resize=True,
        ),
        Check(
            "fuse",
            "fuse_conv_bias_nonlinearity on against off, same preprocessing",
            Tolerance(atol=1e-4, rtol=1e-4, cosine_min=0.999999),
            _fuse,
            needs="fuse-twin",
            expected_failure="may",
            share=0.5,
        ),
        # Not marked by expected_failure: it replays the variant's own preprocessing recipe, so
        # a variant's known defect cannot show here, and an eager failure is an export defect.
        Check(
            "eager",
            "the Lite graph against the eager MegEngine module it was traced from",
            Tolerance(atol=1e-3, rtol=1e-4, cosine_min=0.999999),
            _eager,
            applies=_eager_applies,
            share=0.25,
        ),
        Check(
            "batch",
            "sample i of a batch against the same image alone",
            Tolerance(atol=1e-4, rtol=1e-4, cosine_min=0.999999),
            _batch,
            min_batch=2,
            share=0.25,
            variants="any",
        ),
        Check(
            "determinism",
            "the same input twice through one loaded network, another in between",
            Tolerance(atol=0.0, rtol=0.0, cosine_min=1.0, spread_ratio=0.0, centred_cosine_min=1.0),
            _determinism,
            share=0.2,
            variants="any",
        ),
        Check(
            "device",
            "CPU against CUDA",
            Tolerance(
                atol=1e-2,
                rtol=1e-3,
                cosine_min=0.99999,
                spread_ratio=1e-2,
                centred_cosine_min=0.99999,
            ),
            _device,
            runtime_skip=_cuda_skip,
            expected_failure="may",
            share=0.5,
            variants="any",
        ),
        # The configuration deployment code loads (exporters.tuned.lite_config) against the
        # default one: other kernels, so the eager check's tolerance (table in the module doc).
        Check(
            "tuned",
            "the variant under its tuned Lite configuration (tuned.json) against Lite's default",
            Tolerance(atol=1e-3, rtol=1e-4, cosine_min=0.999999),
            _tuned,
            applies=_tuned_applies,
            share=0.25,
            probe_config=tuned_config_name,
        ),
        Check(
            "photos",
            "the variant against the reference pipeline on real photos, and top-1 for class scores",
            _REFERENCE,  # the same two pipelines compared: the same noise source
            _reference,
            needs="reference",
            expected_failure="may",
            either_resize=True,
            fixed=photo_groups,
            same_top1=True,
        ),
        Check(
            "int8",
            "the int8 variant against the float reference pipeline on real photos: cosine, "
            "spread and the reference top-1 within the int8 top-5",
            INT8_TOLERANCE,
            _reference,
            needs="reference",
            expected_failure="may",
            fixed=photo_batch,
            variants="int8",
            rule=class_rule,
        ),
    )
}


def get_check(name: str) -> Check:
    """The check named ``name``, or HarnessError listing the known ones."""
    try:
        return GATE_CHECKS[name]
    except KeyError:
        raise HarnessError(
            f"unknown check {name!r}; known checks: {', '.join(GATE_CHECKS)}"
        ) from None


def examples(check: str) -> int:
    """How many examples ``check`` runs under the loaded Hypothesis profile."""
    from hypothesis import settings

    return GATE_CHECKS[check].max_examples(settings.default.max_examples)


def skip_reason(check: str, manifest: Manifest, entry: VariantEntry) -> str | None:
    """Why ``check`` does not apply to ``entry`` (None when it does); known without running."""
    return GATE_CHECKS[check].skip_reason(manifest, entry)


def runtime_skip_reason(check: str) -> str | None:
    """Why ``check`` cannot run on this machine (None when it can); may need MegEngine."""
    runtime_skip = GATE_CHECKS[check].runtime_skip
    return runtime_skip() if runtime_skip else None
