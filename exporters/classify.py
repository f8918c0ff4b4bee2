"""Classify images with a release folder, without knowing its backbone or preprocessing.

Python::

    from mge_harness.exporters.classify import Classifier

    with Classifier("releases/efficientnet_lite0") as classifier:
        for result in classifier.classify(["chelsea.png", bgr_array]):
            print(result.source, result.top.name, result.top.probability)

Command line (``--top-k`` defaults to 1)::

    python -m exporters.classify --release DIR [--variant ID] [--device cpu] [--top-k N]
                                 [--batch-size N] [--max-pixels N] [--json] IMAGE...

prints, per image, its top-1 on the line that names the image and the other ``N - 1`` results
indented by two spaces under it (``index name probability``, probability with 3 decimals)::

    chelsea.png: 282 tiger cat 0.523
      285 Egyptian cat 0.310

so ``grep -v '^ '`` keeps one line per image. ``--json`` prints one JSON object instead:
``{"release", "variant", "device", "results": [{"source", "predictions": [{"index", "name",
"probability"}, ...]}, ...]}``. Bad input ends with ``error: <one line>`` on stderr, exit 2.

Images are read as ``exporters.images`` describes (grey, BGRA and 16-bit files are accepted).

Class names, first rule that applies:

1. the manifest's top-level ``"labels"``: ``"imagenet"`` (the 1000 ImageNet-1k names), a list
   of names, or the name of a UTF-8 text file inside the release folder with one name per line;
   its length must match the model's number of outputs;
2. a model with 1000 outputs: the ImageNet-1k names (``exporters.models.imagenet``);
3. otherwise ``"class N"``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mge_harness.exporters.devices import DeviceConfig, get_device_config
from mge_harness.exporters.errors import HarnessError, run_cli
from mge_harness.exporters.files import check_regular
from mge_harness.exporters.images import MAX_IMAGE_PIXELS, ImageInput, image_inputs
from mge_harness.exporters.manifest import MANIFEST, Manifest, VariantEntry, load_manifest, path_inside

#: Images per forward. Bounds memory (decoded images and the float batch) on long lists.
DEFAULT_BATCH_SIZE = 8


@dataclass(frozen=True)
class Prediction:
    """One class of a result: logit index, class name and softmax probability."""

    index: int
    name: str
    probability: float


@dataclass(frozen=True)
class Classification:
    """The top-k predictions for one image, best first; ``source`` is its path or ``array[i]``."""

    source: str
    predictions: tuple[Prediction, ...]

    @property
    def top(self) -> Prediction:
        return self.predictions[0]

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "predictions": [asdict(p) for p in self.predictions]}


def check_positive(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise HarnessError(f"{name} must be a positive integer, got {value!r}")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, shifted by the row maximum so large logits cannot overflow."""
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def default_variant(manifest: Manifest) -> VariantEntry:
    """The variant to classify with when none is named.

    The fused variant with conv-bias fusion on (preprocessing inside the graph), else the
    reference variant, else the first variant; never one marked ``expected_failure``.
    """
    usable = [e for e in manifest.variants if e.expected_failure is None]
    if not usable:
        raise HarnessError(
            f"{manifest.root / MANIFEST}: every variant is marked expected_failure; name one "
            "explicitly to classify with it anyway"
        )
    for entry in usable:
        if entry.preprocessing == "fused" and entry.fuse_conv_bias_nonlinearity:
            return entry
    try:
        reference = manifest.reference_variant()
    except HarnessError:  # no external variant
        reference = None
    return reference if reference in usable else usable[0]


def class_names(manifest: Manifest, count: int) -> list[str]:
    """Names of the ``count`` model outputs by the rules in the module docstring."""
    labels = manifest.extra.get("labels")
    where = f"{manifest.root / MANIFEST}: 'labels'"
    if labels is None:
        return _imagenet() if count == 1000 else [f"class {i}" for i in range(count)]
    if labels == "imagenet":
        names = _imagenet()
    elif isinstance(labels, list) and all(isinstance(n, str) for n in labels):
        names = labels
    elif isinstance(labels, str):
        names = _labels_file(manifest.root, labels, where)
    else:
        raise HarnessError(
            f'{where} must be "imagenet", a list of names or a text file in the release folder'
        )
    if len(names) != count:
        raise HarnessError(f"{where} gives {len(names)} names; the model has {count} outputs")
    return list(names)


def _imagenet() -> list[str]:
    from mge_harness.exporters.models.imagenet import class_names as imagenet_names

    return imagenet_names()


def _labels_file(root: Path, name: str, where: str) -> list[str]:
    path = path_inside(root, name, f"{where} file")
    check_regular(path, "a text file of class names")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HarnessError(f"{where} names {name!r}, which is not in {root}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise HarnessError(f"{path}: cannot read the class names ({err})") from None
    return text.splitlines()


class Classifier:
    """Classifies images with one variant of a release folder.

    ``variant`` is a variant id of the manifest; defaults to ``default_variant`` (a variant
    marked ``expected_failure`` is used only when named). ``device`` is a device config name
    (``exporters.devices``), defaults to "cpu". ``top_k`` predictions per image, defaults to 5
    (at most the number of classes). ``batch_size`` images per forward, defaults to 8.
    ``max_pixels`` bounds memory: the largest image accepted (larger ones are refused, PNG and
    JPEG files before decoding) and the most pixels decoded and run in one forward (one image
    may use it all); defaults to ``exporters.images.MAX_IMAGE_PIXELS`` (2**27, 134 megapixels).

    The model is loaded on first use and kept until ``close()`` (or the end of a ``with``). It
    runs in this process: unlike the gate and the benchmarks, the classifier does not probe a
    variant in a child process first, so a ``.mge`` that crashes Lite crashes the caller (gate
    the release first).
    """

    def __init__(
        self,
        release_dir: str | Path,
        variant: str | None = None,
        device: DeviceConfig | str = "cpu",
        top_k: int = 5,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_pixels: int = MAX_IMAGE_PIXELS,
    ):
        from mge_harness.exporters.runners import image_runner

        check_positive(top_k, "top_k")
        check_positive(batch_size, "batch_size")
        check_positive(max_pixels, "max_pixels")
        self.max_pixels = max_pixels
        self.manifest = load_manifest(release_dir)
        self.variant = self.manifest.variant(variant) if variant else default_variant(self.manifest)
        self.top_k = top_k
        self.batch_size = batch_size
        self.device = get_device_config(device)
        self.runner = image_runner(self.variant, self.manifest, self.device)
        self._names: list[str] | None = None

    def classify(self, images) -> list[Classification]:
        """Top-k predictions per image, in input order.

        ``images``: a file path, a BGR uint8 array (H, W, 3), an (N, H, W, 3) batch, or a list
        mixing paths and arrays (see ``exporters.images``). Images are decoded a chunk at a
        time: at most ``batch_size`` images and ``max_pixels`` pixels.
        Same-sized images of a chunk run as one batch in raw-input (fused) graphs; external
        variants resize on the host, so a whole chunk runs as one batch whatever the sizes.
        """
        inputs = image_inputs(images, self.max_pixels)
        self.runner.activate()
        results = []
        for chunk in self._chunks(inputs):
            results.extend(self._classify_chunk(chunk))
        return results

    __call__ = classify

    def _chunks(self, inputs: list[ImageInput]):
        """(input, pixels) pairs, decoded one by one, in chunks within both limits."""
        chunk, total = [], 0
        for item in inputs:
            image = item.load(self.max_pixels)
            size = image.shape[0] * image.shape[1]
            if chunk and (len(chunk) == self.batch_size or total + size > self.max_pixels):
                yield chunk
                chunk, total = [], 0
            chunk.append((item, image))
            total += size
        if chunk:
            yield chunk

    def _classify_chunk(self, chunk: list[tuple[ImageInput, np.ndarray]]) -> list[Classification]:
        pixels = [image for _, image in chunk]
        groups: dict[tuple[int, ...] | None, list[int]] = {}
        for i, image in enumerate(pixels):
            # External variants resize on the host, so images of any size share one forward.
            groups.setdefault(image.shape if self.variant.is_raw_input else None, []).append(i)
        probabilities: list[np.ndarray | None] = [None] * len(pixels)
        for group in groups.values():
            logits = self._logits([pixels[i] for i in group])
            for i, row in zip(group, softmax(logits), strict=True):
                probabilities[i] = row
        return [
            self._result(item.source, p) for (item, _), p in zip(chunk, probabilities, strict=True)
        ]

    def _logits(self, images: list[np.ndarray]) -> np.ndarray:
        from mge_harness.exporters.preprocess import reference_preprocess
        from mge_harness.exporters.runners import HostPreprocessRunner

        runner = self.runner
        if isinstance(runner, HostPreprocessRunner):
            batch = np.concatenate([reference_preprocess(im[None], runner.spec) for im in images])
            outputs = runner.model.infer({self.variant.input.name: batch})
        else:  # one image is fed as a view: no copy of a possibly huge image
            batch = images[0][None] if len(images) == 1 else np.stack(images)
            outputs = runner.infer({self.variant.input.name: batch})
        return self._check_logits(outputs, len(images))

    def _check_logits(self, outputs: dict[str, np.ndarray], count: int) -> np.ndarray:
        name = self._logits_name(outputs)
        logits = outputs[name]
        if logits.ndim > 2 and all(d == 1 for d in logits.shape[2:]):  # (N, classes, 1, 1)
            logits = logits.reshape(logits.shape[:2])
        if logits.ndim != 2 or logits.shape[0] != count:
            raise HarnessError(
                f"{self.variant.path}: output {name!r} has shape {logits.shape} for {count} "
                "images; a classifier needs (N, classes) logits"
            )
        return logits

    def _logits_name(self, outputs: dict[str, np.ndarray]) -> str:
        """The output that holds class scores: the only one, else the one the manifest's
        ``outputs`` marks ``logits``."""
        if len(outputs) == 1:
            return next(iter(outputs))
        marked = [o.name for o in self.manifest.outputs or () if o.kind == "logits"]
        if len(marked) == 1 and marked[0] in outputs:
            return marked[0]
        raise HarnessError(
            f"{self.variant.path}: has outputs {sorted(outputs)}; a classifier needs one (N, "
            "classes) logits output: mark it with kind 'logits' in manifest.json's outputs"
        )

    def _result(self, source: str, probabilities: np.ndarray) -> Classification:
        if self._names is None:
            self._names = class_names(self.manifest, len(probabilities))
        order = np.argsort(-probabilities, kind="stable")[: self.top_k]
        predictions = tuple(
            Prediction(int(i), self._names[i], float(probabilities[i])) for i in order
        )
        return Classification(source, predictions)

    def close(self) -> None:
        """Releases the loaded model; the next ``classify`` loads it again."""
        self.runner.deactivate()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- command line --------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m exporters.classify",
        description="Classify images with a release folder: per image, the top-1 on the line "
        "naming it and the rest of the top-k indented under it (index, name, probability).",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any cv2 format)")
    parser.add_argument("--release", required=True, metavar="DIR", help="the release folder")
    parser.add_argument(
        "--variant",
        metavar="ID",
        help="variant id from manifest.json (defaults to the fused variant with conv-bias "
        "fusion on, else the reference variant; expected-failure variants only when named)",
    )
    parser.add_argument(
        "--device", default="cpu", help="device config name, e.g. cpu, cpu-2t, cuda (default cpu)"
    )
    parser.add_argument(
        "--top-k", type=int, default=1, metavar="N", help="predictions per image (default 1)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help=f"images per forward (default {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=MAX_IMAGE_PIXELS,
        metavar="N",
        help="refuse images larger than N pixels (height x width), and decode and run at most "
        f"N pixels at a time (default {MAX_IMAGE_PIXELS}, about 134 megapixels)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    return parser.parse_args(argv)


def format_text(results: list[Classification]) -> str:
    """The CLI's text output (see the module docstring)."""
    lines = []
    for result in results:
        for rank, p in enumerate(result.predictions):
            prefix = f"{result.source}: " if rank == 0 else "  "
            lines.append(f"{prefix}{p.index} {p.name} {p.probability:.3f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    check_positive(args.top_k, "--top-k")
    check_positive(args.batch_size, "--batch-size")
    check_positive(args.max_pixels, "--max-pixels")
    from mge_harness.exporters.quiet import probe_cuda_quietly

    probe_cuda_quietly()
    options = (args.variant, args.device, args.top_k, args.batch_size, args.max_pixels)
    with Classifier(args.release, *options) as clf:
        if clf.variant.expected_failure:
            print(
                f"warning: {clf.variant.id} is expected to fail equivalence: "
                f"{clf.variant.expected_failure}",
                file=sys.stderr,
            )
        results = clf.classify(args.images)
    if args.json:
        document = {
            "release": str(clf.manifest.root),
            "variant": clf.variant.id,
            "device": clf.device.name,
            "results": [r.to_dict() for r in results],
        }
        return _print(json.dumps(document, indent=2, ensure_ascii=False))
    return _print(format_text(results))


def _print(text: str) -> int:
    """Prints to stdout; a reader that stops early (``| head``) ends the run quietly."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Python would report the pipe again when flushing stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # killed by SIGPIPE, as shell tools report it
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
