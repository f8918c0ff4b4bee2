"""Evidence image: what a failing variant feeds its network, beside what the reference feeds it.

For a variant that fails ``reference`` or ``photos``, one PNG beside its counterexample
(``<counterexamples>/<variant>/evidence.png``) shows, on a real photo (``PHOTO``, from
scikit-image), three panels side by side: the input photo, what the reference pipeline feeds
the network and what the variant's graph feeds it, the last two de-normalised back to BGR
pixels under the release's mean and std and upscaled with nearest neighbour by a whole factor
so that their short side is at least ``MIN_SIDE`` px; the photo is scaled to the same height.
Each panel has its label above it and, for a release with one logits output, the top-5 class
indices of the reference and of the variant below it.

What the variant's graph feeds the network: for a release written by this harness's exporter
(the preprocessing recipe is known) the variant's recipe is dumped on its own with mean 0 and
std 1 (``exporters.export.dump_preprocessing``, cached in a temp folder) and run with Lite on
the photo, so the panel shows the graph's own pixels; an ``external`` variant is fed by host
OpenCV, as the reference is. A hand-written release's graph is opaque (its "fused"
preprocessing is whatever the user traced), so the panel shows the closest explanation's
tensor (``equivalence.diagnose``) and says so in its label, or is left grey when there is none.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mge_harness.exporters.preprocess import PreprocessSpec, reference_preprocess

if TYPE_CHECKING:
    from mge_harness.equivalence.diagnose import Diagnosis
    from mge_harness.equivalence.gate import Gate

#: The photo shown (a scikit-image loader of ``equivalence.photos``).
PHOTO = "chelsea"
#: Smallest short side of the network-input panels, in px.
MIN_SIDE = 224
#: Label band above and top-5 band below each panel, in px.
HEADER, FOOTER = 40, 22
PANELS = 3
_FONT, _SCALE = 0, 0.42  # cv2.FONT_HERSHEY_SIMPLEX
_GREY = 96


def evidence_path(counterexample: Path) -> Path:
    """Where a variant's evidence image goes: beside its counterexample."""
    return Path(counterexample).parent / "evidence.png"


def evidence_photo() -> np.ndarray:
    """The photo the evidence image shows (``PHOTO``), uint8 BGR."""
    from mge_harness.equivalence.photos import PhotoSpec, load_photo

    return load_photo(PhotoSpec(PHOTO)).image


def to_pixels(batch: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """A float32 NCHW network input back to uint8 BGR pixels (H, W, 3) of its first image."""
    pixels = batch[0].transpose(1, 2, 0) * np.float32(spec.std) + np.float32(spec.mean)
    if spec.color == "rgb":
        pixels = pixels[:, :, ::-1]
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _recipe_known(manifest) -> bool:
    """True for releases this harness exported: their variants' recipes are the named ones."""
    source = manifest.source
    return manifest.extra.get("builtin") is True or (
        source is not None and source.origin != "--eager"
    )


def _graph_pixels(entry, spec: PreprocessSpec, photo: np.ndarray) -> np.ndarray:
    """The variant's preprocessing recipe dumped alone (mean 0, std 1, BGR: the resized
    pixels), cached in a temp folder, run with Lite on ``photo``."""
    import megengine

    from mge_harness.exporters.export import dump_preprocessing
    from mge_harness.exporters.runners import LiteRunner

    height, width = spec.size
    folder = Path(tempfile.gettempdir()) / "mge-harness-evidence"
    folder.mkdir(exist_ok=True)
    path = folder / f"{entry.preprocessing}-{height}x{width}-{megengine.__version__}.mge"
    if not path.is_file():
        plain = replace(spec, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), color="bgr")
        dump_preprocessing(plain, path, entry.preprocessing)
    with LiteRunner(path, input_spec=entry.input) as runner:
        pixels = runner.infer({"data": photo[None]})["pixels"]
    return np.clip(np.rint(pixels[0].transpose(1, 2, 0)), 0, 255).astype(np.uint8)


def variant_feed(
    gate: Gate, variant_id: str, photo: np.ndarray, diagnosis: Diagnosis | None
) -> tuple[np.ndarray | None, list[str]]:
    """What the variant feeds its network on ``photo`` as BGR pixels (None: unknown), and the
    panel's label lines."""
    from mge_harness.equivalence.diagnose import FAMILIES
    from mge_harness.exporters.preprocess import preprocessing_recipe

    spec = gate.manifest.preprocess
    entry = gate.manifest.variant(variant_id)
    if not entry.is_raw_input:
        return to_pixels(reference_preprocess(photo[None], spec), spec), [
            "variant: host OpenCV",
            "(the reference's own preprocessing)",
        ]
    if _recipe_known(gate.manifest):
        preprocessing_recipe(entry.preprocessing)  # a HarnessError for an unknown one
        return _graph_pixels(entry, spec, photo), [
            "variant: its graph's input",
            f"(recipe {entry.preprocessing!r}, dumped alone)",
        ]
    if diagnosis is not None and diagnosis.family is not None:
        batch = FAMILIES[diagnosis.family].preprocess(photo[None], spec)
        return to_pixels(batch, spec), [
            f"variant: closest explanation '{diagnosis.family}'",
            "(hand-written graph: not its own pixels)",
        ]
    return None, ["variant: input unknown", "(hand-written graph, no known explanation)"]


def _top5(gate: Gate, variant_id: str, photo: np.ndarray) -> tuple[str, str] | None:
    """The reference's and the variant's top-5 classes on ``photo`` (one logits output only)."""
    from mge_harness.equivalence.checks import infer
    from mge_harness.exporters.outputs import logits_names

    ref = infer(gate.pool.reference(), photo[None])
    out = infer(gate.pool.image(gate.manifest.variant(variant_id)), photo[None])
    names = logits_names(gate.manifest.outputs, {n: np.shape(v) for n, v in ref.items()})
    if len(names) != 1:
        return None
    [name] = names

    def top5(logits: np.ndarray) -> str:
        return "top-5: " + " ".join(str(int(i)) for i in np.argsort(-logits[0], kind="stable")[:5])

    return top5(ref[name]), top5(out[name])


def _scaled(pixels: np.ndarray, height: int) -> np.ndarray:
    import cv2

    h, w = pixels.shape[:2]
    width = max(1, round(w * height / h))
    shrink = height < h
    return cv2.resize(
        pixels, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_NEAREST
    )


def _panel(pixels: np.ndarray | None, size: tuple[int, int], width: int, lines, footer: str):
    import cv2

    height = size[0]
    cell = np.full((HEADER + height + FOOTER, width, 3), 255, np.uint8)
    content = np.full((height, size[1], 3), _GREY, np.uint8) if pixels is None else pixels
    left = (width - content.shape[1]) // 2
    cell[HEADER : HEADER + height, left : left + content.shape[1]] = content
    for i, text in enumerate(lines[:2]):
        cv2.putText(cell, text, (4, 16 + 18 * i), _FONT, _SCALE, (0, 0, 0), 1, cv2.LINE_AA)
    if footer:
        y = HEADER + height + 16
        cv2.putText(cell, footer, (4, y), _FONT, _SCALE, (0, 0, 0), 1, cv2.LINE_AA)
    return cell


def save_evidence(gate: Gate, variant_id: str, diagnosis: Diagnosis | None, path: Path) -> Path:
    """Writes the evidence image of ``variant_id`` to ``path`` (atomically); returns it."""
    import cv2

    from mge_harness.exporters.files import atomic_write_bytes

    spec = gate.manifest.preprocess
    photo = evidence_photo()
    height, width = spec.size
    factor = math.ceil(MIN_SIDE / min(height, width))
    network = (factor * height, factor * width)
    reference = to_pixels(reference_preprocess(photo[None], spec), spec)
    feed, feed_label = variant_feed(gate, variant_id, photo, diagnosis)
    shown_photo = _scaled(photo, network[0])
    cell_width = max(network[1], shown_photo.shape[1], 300)
    top5 = _top5(gate, variant_id, photo) or ("", "")

    def upscale(pixels):
        return None if pixels is None else _scaled(pixels, network[0])

    panels = [
        _panel(shown_photo, shown_photo.shape[:2], cell_width, [f"photo: {PHOTO}"], ""),
        _panel(
            upscale(reference),
            network,
            cell_width,
            ["reference: OpenCV resize", f"to {height}x{width} (what it should see)"],
            top5[0],
        ),
        _panel(upscale(feed), network, cell_width, feed_label, top5[1]),
    ]
    image = np.concatenate(panels, axis=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, cv2.imencode(".png", image)[1].tobytes())
    return path


def split_panels(image: np.ndarray) -> list[np.ndarray]:
    """The three panels' pixels (labels and top-5 bands cut off) of an evidence image read back
    with ``cv2.imread``; the network panels' height is the image's minus the two bands."""
    width = image.shape[1] // PANELS
    body = image[HEADER : image.shape[0] - FOOTER]
    return [body[:, i * width : (i + 1) * width] for i in range(PANELS)]
