"""Diagnosis: which known preprocessing mistake explains a failure against the reference pipeline.

When a variant fails ``reference`` or ``photos``, its outputs on the failing images are compared
with the reference model's outputs on what each :class:`Family` of mistakes would have fed it
(a host-side numpy/OpenCV re-creation of the mistake, uint8 BGR NHWC -> float32 NCHW, fed to the
reference variant's Lite model), by the scale-free measures of :mod:`equivalence.compare`: the
centred cosine (outputs minus the reference's mean over distinct images, ``Gate.scales``) and
the RMS error over the between-image spread, per output, the worst output counting. The
reference pipeline itself is scored the same way. The best family is named only when it is
close (centred cosine >= ``CENTRED_COSINE_MIN``) and clearly closer than the reference (its
spread ratio at most ``RATIO_FACTOR`` times the reference's); otherwise the diagnosis says
"no known explanation".

Measured on the built-in tiny (32x32) and ResNet18 (224x224, random weights, BatchNorm
calibrated) with the planted bugs of ``tests/test_gate.py`` and a brightness change (+0.5 after
normalisation), each diagnosed on its shrunk ``reference`` counterexample (1x2 to 224x224
images), its last failing ``photos`` batch (480x480) and two photos (chelsea 300x451, rocket
scaled to 107x160): 4 image sets x 6 bugs x 2 models. Figures are the centred cosine (cc) and
spread ratio (r), worst over those image sets:

| who | cc | r | named |
|---|---|---|---|
| the planted bug's own family (crop, channel-swap, mean-std-reversed, nearest, align-corners) | 1.000000 every time | <= 9.5e-6 (ResNet18 align-corners, chelsea); tiny <= 8.1e-7 | 40 of 40 |
| the reference pipeline, failing variants | <= 0.99978 (tiny align-corners, rocket) | >= 0.036 | - |
| the best wrong family | <= 0.99980 (tiny nearest, rocket: align-corners) | where cc >= 0.999: >= 0.85 of the reference's | 0 |
| brightness: the best family | <= 0.966 (tiny), 0.939 (ResNet18) | >= 0.21 | 0 of 8 |
| a correct fused variant: the reference / the best family | 1.000000 / <= 0.9988 | 8.8e-7 / >= 0.036 | 0 |

On the ImageNet-trained EfficientNet-Lite0 (two photos only, no gate run) the same holds: the
bug's own family cc 1.000000 and r <= 7.1e-6 (0 for crop and nearest: the same tensor),
the reference >= 0.0325 (align-corners, cc up to 0.99962), brightness best 0.974; its equal
means make mean-std-reversed a no-op (the planted variant is correct and gets none), and
mean-std-exchanged (mean 127, std 128) comes within cc 0.99997 but r 0.009 of a correct
variant, against the reference's 7.3e-7: the ratio rule, not the cosine, keeps it unnamed.

So a family's own mistake reproduces the variant's outputs to float noise (r of 1e-6 to 1e-5,
what the float arithmetic of two correct pipelines leaves), while anything else stays at
least 0.036 of the between-image spread away. The thresholds sit between, with room both
ways: ``CENTRED_COSINE_MIN`` 0.999 alone would not do (the reference itself reaches 0.9998 on
align_corners=True), so the spread ratio must also be at most ``RATIO_FACTOR`` = 0.1 of the
reference's (the true family: at most 2.2e-4 of it; a wrong one: at least 0.85). Diagnosing
one failure took 0.4-3.4 s on ResNet18 and 1.3-5 s on EfficientNet-Lite0 (ten families, two
reference runs; 15 s for the first, cold, call), and runs only once a check has failed, on its
final example.

Families that change nothing for a release's spec (mean-std-reversed when the three means and
stds are equal, transposed on a symmetric image) are skipped, so a tie with the reference never
names them.

"No resize" needs a precise meaning: a graph that leaves the resize out feeds the network the
image at its own size. On an input already at the model's size that is exactly the reference
pipeline (``cv2.resize`` to the same size copies the image), so there is nothing to explain; on
any other size the network sees another shape, which the reference model (its input declared
``(N, 3, H, W)``) refuses, and such a variant fails its checks with a shape error, not by its
numbers. So "no resize" is not a family here: what a graph without a proper resize most often
does instead, take the top-left window, is the ``crop`` family.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from mge_harness.equivalence.compare import Tolerance, compare
from mge_harness.exporters.preprocess import PreprocessSpec, normalize_pixels, reference_preprocess

if TYPE_CHECKING:
    from mge_harness.equivalence.gate import Gate

#: A family is named only with at least this centred cosine to the variant's outputs.
CENTRED_COSINE_MIN = 0.999
#: ... and a spread ratio at most this share of the reference pipeline's.
RATIO_FACTOR = 0.1

#: Any result will do: only the scale-free metrics are read.
_ANY = Tolerance(atol=0.0, rtol=0.0, cosine_min=-1.0)


# --- the families: host re-creations of preprocessing mistakes ------------------------------


def _exact(images: np.ndarray, spec: PreprocessSpec, **changes) -> np.ndarray:
    """The exact-resize reference pipeline under a changed spec (the fused graphs' resize)."""
    return reference_preprocess(images, replace(spec, **changes), exact=True)


def _crop(images: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    # warp_perspective with an identity matrix and its default replicate border: output pixel
    # (x, y) is input pixel (min(x, W - 1), min(y, H - 1)); bit for bit the identity-warp recipe.
    height, width = spec.size
    rows = np.minimum(np.arange(height), images.shape[1] - 1)
    cols = np.minimum(np.arange(width), images.shape[2] - 1)
    return normalize_pixels(images[:, rows][:, :, cols], spec)


def _nearest_index(in_len: int, out_len: int) -> np.ndarray:
    # MegEngine's interpolate(mode="nearest"): floor(d / float32(out / in)) in float32, clamped;
    # bit for bit. cv2's INTER_NEAREST (floor(d * in / out) in double) misses it by one source
    # pixel at some exact ratios (480 -> 32), INTER_NEAREST_EXACT (half-pixel centres) everywhere.
    scale = np.float32(out_len) / np.float32(in_len)
    index = np.floor(np.arange(out_len, dtype=np.float32) / scale).astype(np.int64)
    return np.minimum(index, in_len - 1)


def _nearest(images: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    rows = _nearest_index(images.shape[1], spec.size[0])
    cols = _nearest_index(images.shape[2], spec.size[1])
    return normalize_pixels(images[:, rows][:, :, cols], spec)


def _corner_grid(in_len: int, out_len: int):
    position = np.arange(out_len) * ((in_len - 1) / max(out_len - 1, 1))
    low = np.floor(position).astype(np.int64)
    return low, np.minimum(low + 1, in_len - 1), (position - low).astype(np.float32)


def _align_corners(images: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    # Bilinear on the grid that maps corner pixels to corner pixels: d * (in - 1) / (out - 1);
    # within 1e-3 grey levels of MegEngine's interpolate(align_corners=True).
    height, width = spec.size
    top, bottom, fy = _corner_grid(images.shape[1], height)
    left, right, fx = _corner_grid(images.shape[2], width)
    pixels = images.astype(np.float32)
    fy, fx = fy[None, :, None, None], fx[None, None, :, None]
    rows = pixels[:, top] * (1 - fy) + pixels[:, bottom] * fy
    return normalize_pixels(rows[:, :, left] * (1 - fx) + rows[:, :, right] * fx, spec)


def _transposed(images: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    # Resized to width x height and laid out W-major (transpose (0, 3, 2, 1) where (0, 3, 1, 2)
    # was meant): the picture mirrored across its diagonal, at the model's input shape.
    height, width = spec.size
    return _exact(images, spec, size=(width, height)).transpose(0, 1, 3, 2)


def _other_color(spec: PreprocessSpec) -> str:
    return "rgb" if spec.color == "bgr" else "bgr"


@dataclass(frozen=True)
class Family:
    """One known preprocessing mistake: ``preprocess(images, spec)`` re-creates on the host what
    such a graph feeds the network (uint8 BGR NHWC -> float32 NCHW at ``spec.size``);
    ``explanation(spec)`` says it in words."""

    name: str
    explanation: Callable[[PreprocessSpec], str]
    preprocess: Callable[[np.ndarray, PreprocessSpec], np.ndarray]


#: The registry, in the order ties are broken.
FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "crop",
            lambda s: (
                f"crops the top-left {s.size[0]}x{s.size[1]} instead of resizing, as an "
                "identity warp_perspective does"
            ),
            _crop,
        ),
        Family(
            "channel-swap",
            lambda s: f"feeds {_other_color(s).upper()} where the model wants {s.color.upper()}",
            lambda i, s: _exact(i, s, color=_other_color(s)),
        ),
        Family(
            "mean-std-reversed",
            lambda s: "applies mean and std in the other channel order",
            lambda i, s: _exact(i, s, mean=s.mean[::-1], std=s.std[::-1]),
        ),
        Family(
            "mean-std-exchanged",
            lambda s: "subtracts the std and divides by the mean (mean and std exchanged)",
            lambda i, s: _exact(i, s, mean=s.std, std=s.mean),
        ),
        Family(
            "no-std",
            lambda s: "subtracts the mean but does not divide by the std",
            lambda i, s: _exact(i, s, std=(1.0, 1.0, 1.0)),
        ),
        Family(
            "no-normalization",
            lambda s: "feeds raw 0-255 pixels (neither mean nor std applied)",
            lambda i, s: _exact(i, s, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
        ),
        Family(
            "scaled-01",
            lambda s: "scales pixels to [0, 1] (x / 255) instead of (x - mean) / std",
            lambda i, s: _exact(i, s, mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0)),
        ),
        Family(
            "nearest",
            lambda s: "resizes with nearest neighbour instead of bilinear",
            _nearest,
        ),
        Family(
            "align-corners",
            lambda s: "resizes bilinear with align_corners=True (another sampling grid)",
            _align_corners,
        ),
        Family(
            "transposed",
            lambda s: "swaps height and width (the picture transposed)",
            _transposed,
        ),
    )
}


# --- scoring --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    """How close the variant's outputs are to one explanation's: the worst output's centred
    cosine and spread ratio (NaN when no output could be judged)."""

    centred_cosine: float
    spread_ratio: float

    @staticmethod
    def of(explained: dict, out: dict, scales: dict) -> Score:
        cosines, ratios = [], []
        for name, scale in scales.items():
            if name not in out or name not in explained or scale is None:
                continue
            result = compare(explained[name], out[name], _ANY, scale)
            cosines.append(result.centred_cosine)
            ratios.append(result.spread_ratio)
        if not cosines or any(math.isnan(c) for c in cosines):
            return Score(math.nan, max(ratios, default=math.nan))
        return Score(min(cosines), max(ratios))


@dataclass(frozen=True)
class Diagnosis:
    """The closest explanation of a failure (``family`` None: no known one), with its figure
    and the reference pipeline's."""

    family: str | None
    explanation: str
    best: str | None  # the best-scoring family, named or not
    score: Score
    reference: Score
    scores: dict[str, Score] = field(default_factory=dict, repr=False)

    def line(self) -> str:
        """One line for the failure text."""
        ref = f"{self.reference.centred_cosine:.5f} with the reference"
        if self.family is None:
            best = (
                f"best family {self.best}: centred correlation {self.score.centred_cosine:.5f}; "
                if self.best
                else ""
            )
            return f"closest explanation: no known explanation ({best}{ref})"
        return (
            f"closest explanation: {self.explanation} (centred correlation "
            f"{self.score.centred_cosine:.5f} with the {self.family} family; {ref})"
        )

    def to_dict(self) -> dict[str, Any]:
        def clean(value: float):
            return value if math.isfinite(value) else None

        return {
            "family": self.family,
            "explanation": self.explanation,
            "figure": clean(self.score.centred_cosine),
            "spread_ratio": clean(self.score.spread_ratio),
            "reference_figure": clean(self.reference.centred_cosine),
            "reference_spread_ratio": clean(self.reference.spread_ratio),
            "best": self.best,
            "families": {name: clean(score.centred_cosine) for name, score in self.scores.items()},
        }


def is_named(score: Score, reference: Score) -> bool:
    """The rule: close, and clearly closer than the reference pipeline."""
    if math.isnan(score.centred_cosine) or score.centred_cosine < CENTRED_COSINE_MIN:
        return False
    return score.spread_ratio <= RATIO_FACTOR * reference.spread_ratio


def diagnose(gate: Gate, variant_id: str, images: np.ndarray) -> Diagnosis:
    """The closest known explanation of ``variant_id``'s outputs on ``images`` (uint8 BGR)."""
    from mge_harness.equivalence.checks import infer
    from mge_harness.equivalence.gate import infer_model

    spec = gate.manifest.preprocess
    scales = gate.scales
    out = infer(gate.pool.image(gate.manifest.variant(variant_id)), images)
    model = gate.pool.reference_model()
    baseline = reference_preprocess(images, spec)
    exact = reference_preprocess(images, spec, exact=True)
    # The closer of the two correct pipelines, as Gate.run judges (uint8 or exact resize).
    reference = max(
        (Score.of(infer_model(model, batch), out, scales) for batch in (baseline, exact)),
        key=lambda s: -s.spread_ratio if not math.isnan(s.spread_ratio) else -math.inf,
    )
    scores = {}
    for family in FAMILIES.values():
        batch = family.preprocess(images, spec)
        if np.array_equal(batch, baseline) or np.array_equal(batch, exact):
            continue  # the mistake changes nothing for this spec and these images
        scores[family.name] = Score.of(infer_model(model, batch), out, scales)
    judged = [name for name, s in scores.items() if not math.isnan(s.centred_cosine)]
    # The highest centred cosine, then the smallest spread ratio; a tie goes to registry order.
    best = max(
        judged,
        key=lambda name: (scores[name].centred_cosine, -scores[name].spread_ratio),
        default=None,
    )
    score = scores[best] if best else Score(math.nan, math.nan)
    if best and is_named(score, reference):
        text = FAMILIES[best].explanation(spec)
        return Diagnosis(best, text, best, score, reference, scores)
    return Diagnosis(None, "no known explanation", best, score, reference, scores)


def main(argv=None) -> int:
    """``python -m equivalence.diagnose NPY``: the closest explanation of a saved
    counterexample (release and variant from its sidecar, or ``--release``/``--variant``), and
    every family's figures. Exits 0 when a family is named, 1 when none is."""
    import argparse
    from pathlib import Path

    from mge_harness.equivalence.gate import Gate
    from mge_harness.equivalence.reproduce import _sidecar, load_images
    from mge_harness.exporters.errors import HarnessError
    from mge_harness.exporters.manifest import load_manifest

    parser = argparse.ArgumentParser(prog="python -m equivalence.diagnose", description=__doc__)
    parser.add_argument("npy", help="a counterexample .npy saved by the gate")
    parser.add_argument("--release", metavar="DIR", help="release folder (default: sidecar's)")
    parser.add_argument("--variant", metavar="ID", help="variant id (default: sidecar's)")
    args = parser.parse_args(argv)
    saved = _sidecar(Path(args.npy))
    release, variant = args.release or saved.get("release"), args.variant or saved.get("variant")
    if not (release and variant):
        raise HarnessError(f"{args.npy}: no sidecar names the release and variant; pass both")
    images = load_images(Path(args.npy))
    gate = Gate(load_manifest(release))
    try:
        diagnosis = diagnose(gate, variant, images)
    finally:
        gate.close()
    print(f"{variant} on a batch of shape {images.shape}\n{diagnosis.line()}")
    rows = [("reference", diagnosis.reference), *diagnosis.scores.items()]
    for name, score in sorted(rows, key=lambda row: -np.nan_to_num(row[1].centred_cosine, nan=-2)):
        print(
            f"  {name:20s} centred cosine {score.centred_cosine:.6f}  spread ratio "
            f"{score.spread_ratio:.3g}"
        )
    return 0 if diagnosis.family else 1


if __name__ == "__main__":
    import sys

    from mge_harness.exporters.errors import run_cli

    sys.exit(run_cli(main))
