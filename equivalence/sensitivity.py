"""Input sensitivity: do the reference outputs depend on the input at all?

Every check compares two outputs on the same images. If the reference outputs are the same for
every image (random weights whose activations have collapsed, BatchNorm at its initial
statistics, a dump that lost the input), a broken variant agrees with them as well as a correct
one does, and every check passes vacuously. So before any check the gate feeds the reference
pipeline distinct images (four real photos and four image-like pictures, at the model's input
size) and measures, per output:

* the spread S: the RMS over elements of ``R - mean over images of R``, and
* the float noise E: the worst image's RMS difference between the batch and the same images run
  one by one (what the float arithmetic alone changes).

An output responds to the image when S is at least ``NOISE_FACTOR`` times E (so a correct
variant's error, about E, sits at most 1e-4 of S, ten times under the checks' ``spread_ratio``
of 1e-3) and, where E is exactly 0, when S is at least ``MIN_RELATIVE_SPREAD`` of the outputs'
RMS (float32 resolution). If no output responds, the gate refuses the release in one line
(exit 4) and says what to do. A large constant offset is not a reason to refuse: logits of 1000
that vary by 0.3 between images are judged fine by the scale-free rule.

When the Lite reference does not respond but the eager module it was traced from does, the
dump is what lost the input (MegEngine 1.13 writes ``F.clip(x, 1, 6)`` so): the gate goes on,
and the eager check is the one that fails.

Measured (equivalence/README.md, "Input sensitivity"): S / E is 219 for MegEngine Models'
ShuffleNetV2 with BatchNorm as initialised (refused; its correct pairs differ by 7e-3 of S) and
at least 3.3e6 (batch noise) on the six other models measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mge_harness.equivalence.compare import OutputScale, worst_row_rms
from mge_harness.exporters.errors import HarnessError

#: The spread must be at least this many times the float noise.
NOISE_FACTOR = 1e4
#: Where no float noise shows (bitwise batching), the spread must be at least this share of the
#: outputs' RMS: a few float32 ulps.
MIN_RELATIVE_SPREAD = 1e-6

#: Advice printed with a refusal.
ADVICE = (
    "load trained weights (--weights) or calibrate BatchNorm on image-like inputs before "
    "exporting (exporters.zoo.calibrate_batchnorm)"
)


@dataclass(frozen=True)
class Spread:
    """How much one output varies between distinct images, against its float noise."""

    output: str
    spread: float  # RMS of (R - mean over images), over all elements
    scale: float  # RMS of R
    images: int
    noise: float = 0.0  # worst image's RMS of (batch - one by one)

    @property
    def relative(self) -> float:
        return self.spread / self.scale if self.scale > 0 else 0.0

    @property
    def responds(self) -> bool:
        if self.spread <= 0 or self.relative < MIN_RELATIVE_SPREAD:
            return False
        return self.spread >= NOISE_FACTOR * self.noise

    def describe(self) -> str:
        name = f"output {self.output!r}" if self.output else "the output"
        noise = (
            f"{self.spread / self.noise:.3g} times its float noise {self.noise:.3g} (at least "
            f"{NOISE_FACTOR:g} needed)"
            if self.noise > 0
            else f"{self.relative:.2g} of its size {self.scale:.3g}, no float noise seen"
        )
        return (
            f"{name} varies by {self.spread:.3g} RMS across {self.images} distinct images, {noise}"
        )


def spread(outputs: np.ndarray, name: str = "", alone: np.ndarray | None = None) -> Spread:
    """The between-image spread of ``outputs`` (batch on axis 0), in float64; ``alone``, the
    same images run one by one, gives the float noise."""
    values = np.asarray(outputs, np.float64).reshape(len(outputs), -1)
    centred = values - values.mean(axis=0, keepdims=True)
    rms = float(np.sqrt(np.mean(values**2)))
    noise = 0.0
    if alone is not None and np.shape(alone) == np.shape(outputs):
        noise = worst_row_rms(np.asarray(alone, np.float64) - np.asarray(outputs, np.float64))
    return Spread(name, float(np.sqrt(np.mean(centred**2))), rms, len(outputs), noise)


def distinct_images(size: tuple[int, int]) -> np.ndarray:
    """Eight uint8 BGR images at ``size`` that any image model should tell apart: four bundled
    photos (scikit-image) and four smooth image-like pictures with edges."""
    import cv2

    from mge_harness.equivalence.strategies import PHOTOS, _load_photo
    from mge_harness.exporters.zoo import calibration_images

    height, width = size
    photos = [
        cv2.resize(_load_photo(name), (width, height), interpolation=cv2.INTER_AREA)
        for name in PHOTOS
    ]
    return np.concatenate([np.stack(photos), calibration_images(4, size, seed=11)])


def spreads(outputs: dict[str, np.ndarray], alone: dict | None = None) -> list[Spread]:
    """The spread of every output (named only when there are several)."""
    named = len(outputs) > 1
    alone = alone or {}
    return [spread(v, n if named else "", alone.get(n)) for n, v in outputs.items()]


def _responds(found: list[Spread]) -> bool:
    return any(s.responds for s in found)


def _describe(found: list[Spread]) -> str:
    return "; ".join(s.describe() for s in sorted(found, key=lambda s: -s.spread)[:3])


def output_scales(
    outputs: dict[str, np.ndarray], alone: dict | None = None
) -> dict[str, OutputScale | None]:
    """The scale of each reference output on distinct images, for the scale-free rule; None for
    an output without a batch axis or one that does not respond (only the elementwise rule)."""
    scales: dict[str, OutputScale | None] = {}
    for name, values in outputs.items():
        values = np.asarray(values, np.float64)
        if values.ndim == 0 or len(values) < 2 or not np.isfinite(values).all():
            scales[name] = None
            continue
        found = spread(values, name, (alone or {}).get(name))
        centre = values.mean(axis=0, keepdims=True)
        scales[name] = OutputScale(centre, found.spread) if found.responds else None
    return scales


def check_input_sensitivity(
    outputs: dict[str, np.ndarray],
    images: np.ndarray,
    eager=None,
    release: str = "release",
    alone: dict | None = None,
) -> list[str]:
    """Refuses (HarnessError) a release whose reference outputs do not depend on the input.

    ``outputs`` are the reference pipeline's outputs (``{name: array}``) on ``images``
    (``distinct_images``), ``alone`` the same run one image at a time (the float noise);
    ``eager(images)``, when given, returns the eager module's. One output that responds is
    enough (a detector may have a constant one, its anchors). Returns notes for the verdict's
    headline (empty when the reference responds).
    """
    if not all(np.isfinite(v).all() for v in outputs.values()):
        return []  # NaN or Inf: every check reports it ("nonfinite"), more precisely than here
    lite = spreads(outputs, alone)
    if _responds(lite):
        return []
    if eager is not None:
        module = spreads(eager(images))
        if _responds(module):
            best = max(s.relative for s in module)
            return [
                f"input sensitivity: the Lite reference does not respond to its input "
                f"({_describe(lite)}), the eager module does ({best:.2g} of its size): the dump "
                "lost the input; the eager check shows it"
            ]
    raise HarnessError(
        f"{release}: the reference outputs do not depend on the input: {_describe(lite)}; no "
        f"check can tell a broken variant from a correct one on such a model; {ADVICE}"
    )
