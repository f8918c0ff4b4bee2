"""The release folder contract: ``manifest.json`` beside one ``.mge`` per variant.

Exporters write it; a user can write it by hand around their own ``.mge`` files. Everything
that reads a release folder goes through ``load_manifest``, which validates it and says, in
one line, what is wrong and what was expected. The format is documented in the README.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from string import hexdigits
from typing import Any

from mge_harness.exporters.errors import HarnessError
from mge_harness.exporters.files import atomic_write_bytes, check_regular, special_kind
from mge_harness.exporters.outputs import OutputSpec, parse_outputs
from mge_harness.exporters.preprocess import PreprocessSpec
from mge_harness.exporters.schema import TOP, check_keys
from mge_harness.exporters.variants import PREPROCESSINGS, QUANTIZATIONS, RAW_INPUT_PREPROCESSINGS

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class InputSpec:
    """The graph input: name, dtype, layout and shape (None where any size is accepted)."""

    name: str
    dtype: str
    layout: str
    shape: tuple[int | None, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "layout": self.layout,
            "shape": list(self.shape),
        }


def default_input(preprocessing: str, spec: PreprocessSpec) -> InputSpec:
    """The input every variant of a preprocessing kind takes: the contract of this harness."""
    if preprocessing in RAW_INPUT_PREPROCESSINGS:
        return InputSpec("data", "uint8", "NHWC", (None, None, None, 3))
    return InputSpec("data", "float32", "NCHW", (None, 3, *spec.size))


@dataclass(frozen=True)
class VariantEntry:
    """One variant of a release: its file, how it preprocesses, and where it came from."""

    id: str
    file: str
    preprocessing: str
    fuse_conv_bias_nonlinearity: bool
    input: InputSpec
    path: Path
    expected_failure: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)
    #: "int8" for a quantized variant (``exporters.int8``); None: float32.
    quantization: str | None = None

    @property
    def is_raw_input(self) -> bool:
        """True when the graph takes raw uint8 BGR NHWC images (preprocessing inside)."""
        return self.preprocessing in RAW_INPUT_PREPROCESSINGS

    @property
    def fixed_size(self) -> tuple[int, int] | None:
        """(height, width) of the only raw images a raw-input graph takes, as its
        ``input.shape`` declares; None when it takes any size (or is not raw-input)."""
        if not self.is_raw_input:
            return None
        height, width = self.input.shape[1:3]
        return (height, width) if height is not None and width is not None else None

    def to_dict(self) -> dict[str, Any]:
        data = {
            "id": self.id,
            "file": self.file,
            "preprocessing": self.preprocessing,
            "fuse_conv_bias_nonlinearity": self.fuse_conv_bias_nonlinearity,
            "expected_failure": self.expected_failure,
            "input": self.input.to_dict(),
        }
        if self.quantization is not None:
            data["quantization"] = self.quantization
        data.update(self.provenance)
        return data


@dataclass(frozen=True)
class ModelSource:
    """How to rebuild the eager module a release was exported from (manifest key ``source``).

    ``factory`` is ``package.module:callable`` (a callable returning a MegEngine Module);
    ``weights`` a state dict file (``.npz`` or ``megengine.save`` pickle) loaded into it, with
    its ``sha256`` when known. The exporter writes the weights it exported into the release
    (``weights.npz``), so a factory that initialises randomly is rebuilt with the same weights.
    """

    factory: str
    weights: Path | None = None
    sha256: str | None = None
    #: Where it came from, for messages: "manifest.json" or "--eager".
    origin: str = MANIFEST

    def to_dict(self, root: Path) -> dict[str, Any]:
        data: dict[str, Any] = {"factory": self.factory}
        if self.weights is not None:
            weights = self.weights
            if root.resolve() in weights.resolve().parents:
                weights = weights.resolve().relative_to(root.resolve())
            data["weights"] = {"file": str(weights), "sha256": self.sha256}
        return data


@dataclass(frozen=True)
class Manifest:
    """A validated release folder."""

    root: Path
    model: str
    preprocess: PreprocessSpec
    variants: tuple[VariantEntry, ...]
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    source: ModelSource | None = None
    #: The graph outputs by name and kind (``exporters.outputs``); None: as the graph has them.
    outputs: tuple[OutputSpec, ...] | None = None

    def variant(self, variant_id: str) -> VariantEntry:
        for entry in self.variants:
            if entry.id == variant_id:
                return entry
        known = ", ".join(e.id for e in self.variants)
        raise HarnessError(f"{self.root / MANIFEST}: no variant {variant_id!r}; it lists {known}")

    def reference_variant(self) -> VariantEntry:
        """The variant the reference pipeline runs: external with fusion off, else first external;
        never a quantized one."""
        external = [
            e for e in self.variants if e.preprocessing == "external" and e.quantization is None
        ]
        if not external:
            raise HarnessError(
                f"{self.root / MANIFEST}: no variant with preprocessing 'external'; the reference "
                "pipeline needs one that takes float32 NCHW input"
            )
        plain = [e for e in external if not e.fuse_conv_bias_nonlinearity]
        return (plain or external)[0]

    def to_dict(self) -> dict[str, Any]:
        data = {"format_version": FORMAT_VERSION, "model": self.model}
        data.update(self.extra)
        if self.source is not None:
            data["source"] = self.source.to_dict(self.root)
        if self.outputs is not None:
            data["outputs"] = [o.to_dict() for o in self.outputs]
        data["preprocess"] = self.preprocess.to_dict()
        data["variants"] = [e.to_dict() for e in self.variants]
        return data


# --- reading -------------------------------------------------------------------------------

_ENTRY_KEYS = ("id", "file", "preprocessing", "fuse_conv_bias_nonlinearity")
_KNOWN_ENTRY_KEYS = {*_ENTRY_KEYS, "expected_failure", "input", "quantization"}


def load_manifest(release_dir: str | Path, verify: bool = True) -> Manifest:
    """Reads and validates ``release_dir/manifest.json``; HarnessError on anything wrong.

    With ``verify`` (the default) every listed file must exist, be non-empty and, where the
    manifest records a sha256, still have it: a file changed or half-written after the export
    is never trusted.
    """
    root = Path(release_dir)
    if not root.is_dir():
        raise HarnessError(
            f"{root}: release folder does not exist; expected a folder with {MANIFEST}"
        )
    path = root / MANIFEST
    check_regular(path, f"a {MANIFEST} file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HarnessError(f"{path}: missing; a release folder needs a {MANIFEST}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise HarnessError(f"{path}: cannot read ({err})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise HarnessError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    manifest = parse_manifest(data, root.resolve(), str(path))
    if verify:
        verify_files(manifest)
    return manifest


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_files(manifest: Manifest) -> None:
    """HarnessError naming the first variant file (or the source's weights file) that is
    missing, empty or not as recorded."""
    source = manifest.source
    if source is not None and source.weights is not None:
        where = f"{source.weights} (the weights of {source.factory}, {source.origin} 'source')"
        if not source.weights.is_file():
            raise HarnessError(f"{where}: missing; expected a state dict file")
        if source.sha256 and file_sha256(source.weights) != source.sha256:
            raise HarnessError(
                f"{where}: sha256 differs from {MANIFEST} (changed since the export); export again"
            )
    for entry in manifest.variants:
        where = f"{entry.path} (variant {entry.id})"
        kind = special_kind(entry.path)
        if kind:
            raise HarnessError(f"{where}: is {kind}; expected a MegEngine .mge dump")
        try:
            size = entry.path.stat().st_size
        except OSError:
            raise HarnessError(f"{where}: listed in {MANIFEST} but missing") from None
        if size == 0:
            raise HarnessError(f"{where}: empty file; expected a MegEngine .mge dump")
        recorded = entry.provenance.get("sha256")
        if recorded and file_sha256(entry.path) != recorded:
            raise HarnessError(
                f"{where}: sha256 differs from {MANIFEST} (changed or partly written since the "
                "export); export again or update the manifest"
            )


def parse_manifest(data: Any, root: Path, source: str) -> Manifest:
    if not isinstance(data, dict):
        raise HarnessError(f"{source}: expected a JSON object at the top level")
    check_keys(data, TOP, source)
    if "format_version" in data:
        _check_format_version(data["format_version"], source)
    for key in ("model", "preprocess", "variants"):
        if key not in data:
            raise HarnessError(f"{source}: missing key {key!r}; see the README's manifest format")
    if not isinstance(data["model"], str) or not data["model"]:
        raise HarnessError(f"{source}: 'model' must be a non-empty string")
    spec = PreprocessSpec.from_dict(data["preprocess"], source)
    variants = data["variants"]
    if not isinstance(variants, list) or not variants:
        raise HarnessError(f"{source}: 'variants' must be a non-empty list")
    entries = tuple(_parse_entry(v, i, spec, root, source) for i, v in enumerate(variants))
    ids = [e.id for e in entries]
    duplicate = next((i for i in ids if ids.count(i) > 1), None)
    if duplicate:
        raise HarnessError(f"{source}: variant id {duplicate!r} appears twice")
    extra = {
        k: v
        for k, v in data.items()
        if k not in ("model", "preprocess", "variants", "format_version", "source", "outputs")
    }
    model_source = _parse_source(data.get("source"), root, source)
    outputs = parse_outputs(data.get("outputs"), source)
    return Manifest(root, data["model"], spec, entries, extra, model_source, outputs)


def _check_format_version(version: Any, source: str) -> None:
    """A manifest without ``format_version`` (hand-written) is read as the current format; any
    other version than ``FORMAT_VERSION`` (null included) is refused rather than misread."""
    if isinstance(version, bool) or version != FORMAT_VERSION:
        raise HarnessError(
            f"{source}: format_version {version!r} is not one this harness reads (it reads "
            f"{FORMAT_VERSION}); export the release again with this harness, or drop the key "
            "from a hand-written manifest"
        )


def _parse_source(item: Any, root: Path, source: str) -> ModelSource | None:
    """The manifest's ``source``: ``{"factory": "pkg.module:callable", "weights": {"file",
    "sha256"}}`` (weights optional; a bare file name is accepted too)."""
    from mge_harness.exporters.zoo import is_factory_reference

    if item is None:
        return None
    where = f"{source}: source"
    if not isinstance(item, dict):
        raise HarnessError(f"{where} must be an object with 'factory' (and optional 'weights')")
    check_keys(item, "source", where)
    factory = item.get("factory")
    if not isinstance(factory, str) or not is_factory_reference(factory):
        raise HarnessError(f"{where}.factory must be 'package.module:callable', got {factory!r}")
    weights = item.get("weights")
    if weights is None:
        return ModelSource(factory)
    if isinstance(weights, str):
        weights = {"file": weights}
    if not isinstance(weights, dict) or not isinstance(weights.get("file"), str):
        raise HarnessError(
            f"{where}.weights must be {{'file': name, 'sha256': hex}} or a file name"
        )
    check_keys(weights, "weights", f"{where}.weights")
    sha = weights.get("sha256")
    if sha is not None and not _is_sha256(sha):
        raise HarnessError(f"{where}.weights.sha256 must be 64 hex digits, got {sha!r}")
    path = Path(weights["file"])
    path = (
        path if path.is_absolute() else path_inside(root, weights["file"], f"{where}.weights.file")
    )
    return ModelSource(factory, path, sha)


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in hexdigits for c in value)


def _parse_entry(
    item: Any, index: int, spec: PreprocessSpec, root: Path, source: str
) -> VariantEntry:
    where = f"{source}: variants[{index}]"
    if not isinstance(item, dict):
        raise HarnessError(f"{where} must be an object")
    check_keys(item, "variant", where)
    missing = [k for k in _ENTRY_KEYS if k not in item]
    if missing:
        raise HarnessError(f"{where} misses {', '.join(repr(k) for k in missing)}")
    variant_id, file, pre = item["id"], item["file"], item["preprocessing"]
    if not isinstance(variant_id, str) or not variant_id:
        raise HarnessError(f"{where}.id must be a non-empty string")
    if pre not in PREPROCESSINGS:
        raise HarnessError(f"{where}.preprocessing must be one of {PREPROCESSINGS}, got {pre!r}")
    if not isinstance(item["fuse_conv_bias_nonlinearity"], bool):
        raise HarnessError(f"{where}.fuse_conv_bias_nonlinearity must be true or false")
    expected_failure = item.get("expected_failure")
    if expected_failure is not None and not isinstance(expected_failure, str):
        raise HarnessError(f"{where}.expected_failure must be a reason string or null")
    quantization = item.get("quantization")
    if quantization not in (None, *QUANTIZATIONS):
        raise HarnessError(
            f"{where}.quantization must be one of {QUANTIZATIONS} or null, got {quantization!r}"
        )
    return VariantEntry(
        id=variant_id,
        file=file,
        preprocessing=pre,
        fuse_conv_bias_nonlinearity=item["fuse_conv_bias_nonlinearity"],
        input=_parse_input(item.get("input"), pre, spec, where),
        path=path_inside(root, file, f"{where}.file"),
        expected_failure=expected_failure,
        provenance={k: v for k, v in item.items() if k not in _KNOWN_ENTRY_KEYS},
        quantization=quantization,
    )


def path_inside(root: Path, file: Any, where: str) -> Path:
    """``root / file`` resolved, or HarnessError when it is no name or leaves ``root``."""
    if not isinstance(file, str) or not file:
        raise HarnessError(f"{where} must be a file name inside the release folder")
    root = root.resolve()
    path = (root / file).resolve()
    if root not in path.parents:
        raise HarnessError(f"{where} {file!r} points outside the release folder {root}")
    return path


def _parse_input(item: Any, pre: str, spec: PreprocessSpec, where: str) -> InputSpec:
    default = default_input(pre, spec)
    if item is None:
        return default
    if not isinstance(item, dict):
        raise HarnessError(f"{where}.input must be an object")
    check_keys(item, "input", f"{where}.input")
    name = item.get("name", default.name)
    dtype = item.get("dtype", default.dtype)
    if name != "data":
        raise HarnessError(
            f"{where}.input.name is {name!r}; this harness feeds an input named 'data'"
        )
    if dtype != default.dtype:
        raise HarnessError(
            f"{where}.input.dtype is {dtype!r}; preprocessing {pre!r} takes {default.dtype}"
        )
    layout = item.get("layout", default.layout)
    if layout != default.layout:
        raise HarnessError(
            f"{where}.input.layout is {layout!r}; preprocessing {pre!r} takes {default.layout}"
        )
    shape = _parse_shape(item.get("shape"), default, pre, where)
    return InputSpec(default.name, default.dtype, default.layout, shape)


def _parse_shape(shape: Any, default: InputSpec, pre: str, where: str) -> tuple:
    """``input.shape``: 4 entries, each a positive int or null (any size). Raw-input graphs
    take (N, H, W, 3) and may fix H and W (then only such images are fed to them); external
    graphs take (N, 3, H, W) at the model's size."""
    if shape is None:
        return default.shape
    ok = isinstance(shape, list) and len(shape) == 4
    ok = ok and all(v is None or (type(v) is int and v > 0) for v in shape)
    if not ok:
        raise HarnessError(
            f"{where}.input.shape must be 4 positive integers or nulls, got {shape!r}"
        )
    expected = list(default.shape)
    if shape[0] is not None:
        raise HarnessError(
            f"{where}.input.shape[0] is {shape[0]}; the batch must be null (any): the gate "
            "feeds batches of 1 to 4 images"
        )
    if pre in RAW_INPUT_PREPROCESSINGS:
        height, width = shape[1:3]
        if shape[3] != 3 or (height is None) != (width is None):
            raise HarnessError(
                f"{where}.input.shape is {shape}; a raw-input graph takes [N, H, W, 3], with H "
                "and W both null (any size) or both fixed"
            )
        return (shape[0], height, width, 3)
    if shape[1:] != expected[1:]:
        raise HarnessError(
            f"{where}.input.shape is {shape}; preprocessing {pre!r} takes {expected} (float "
            "NCHW at the model's preprocess size)"
        )
    return tuple(shape)


# --- writing -------------------------------------------------------------------------------


def write_manifest(manifest: Manifest) -> Path:
    path = manifest.root / MANIFEST
    text = json.dumps(manifest.to_dict(), indent=2, sort_keys=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))
    return path
