"""Export a model's variants into a release folder, reusing files whose inputs did not change.

The cache key of a variant hashes everything that changes its bytes: the model's weights
fingerprint, the preprocessing spec, the variant and its dump options, the MegEngine version
and the source of this package. A file is reused only when its key matches the manifest's
record and its sha256 still matches what was written. Files are written atomically.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np

from mge_harness.exporters.errors import HarnessError, first_line
from mge_harness.exporters.manifest import (
    MANIFEST,
    Manifest,
    ModelSource,
    VariantEntry,
    default_input,
    file_sha256,
    load_manifest,
    write_manifest,
)
from mge_harness.exporters.outputs import default_kinds
from mge_harness.exporters.preprocess import PreprocessSpec, preprocessing_recipe
from mge_harness.exporters.variants import Variant, default_matrix
from mge_harness.exporters.zoo import ModelSpec

Progress = Callable[[str], None]
LOCK = ".export.lock"


def stderr_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@lru_cache(maxsize=1)
def code_hash() -> str:
    """sha256 over this package's Python sources: any exporter change re-exports."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def megengine_version() -> str:
    import megengine

    return megengine.__version__


def cache_key(model: ModelSpec, variant: Variant) -> str:
    payload = {
        "fingerprint": model.fingerprint,
        "preprocess": model.preprocess.to_dict(),
        "variant": variant.id,
        "preprocessing": variant.preprocessing,
        "dump_options": variant.dump_options(),
        "megengine": megengine_version(),
        "code": code_hash(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def op_histogram(path: str | Path) -> dict[str, int]:
    """How many operators of each type a ``.mge`` holds (ConvBias, Convolution, Elemwise ...)."""
    from megengine.utils.network import Network

    with warnings.catch_warnings():  # Network.load leaves its file open (MegEngine 1.13)
        warnings.simplefilter("ignore", ResourceWarning)
        network = Network.load(str(path))
    return dict(sorted(Counter(o.type for o in network.all_oprs).items()))


def _graph_function(module, variant: Variant, model: ModelSpec, outputs: dict):
    """The traced function: preprocessing (for raw-input variants), the module, and its return
    value flattened to a list of tensors (``exporters.outputs``); ``outputs`` gets their names
    and shapes as the trace runs."""
    from mge_harness.exporters.outputs import flatten_outputs

    recipe = (
        None if variant.preprocessing == "external" else preprocessing_recipe(variant.preprocessing)
    )
    where = f"{model.name} variant {variant.id}"

    def function(data):
        flat = flatten_outputs(
            module(data if recipe is None else recipe(data, model.preprocess)), where
        )
        outputs.clear()
        outputs.update((name, tuple(t.shape)) for name, t in flat.items())
        return list(flat.values())

    return function


def example_input(variant: Variant, model: ModelSpec) -> np.ndarray:
    """The input the graph is traced with: off the target size for raw-input graphs, so that
    nothing size-specific can hide in the trace."""
    height, width = model.preprocess.size
    if variant.raw_input:
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (1, height * 3 // 2 + 7, width * 4 // 3 + 5, 3), np.uint8)
    return np.zeros((1, 3, height, width), np.float32)


def dump_variant(module, model: ModelSpec, variant: Variant, path: Path) -> dict:
    """Traces ``module`` with the variant's preprocessing and dumps it atomically to ``path``.

    Returns the dump's figures and ``outputs``, ``{name: shape}`` of the traced example. A model
    that fails on the example input (a layer fixed to another size, say) is a HarnessError
    naming the model, variant and size, with MegEngine's reason.
    """
    outputs: dict[str, tuple[int, ...]] = {}
    function = _graph_function(module, variant, model, outputs)
    example = example_input(variant, model)
    try:
        dump = dump_graph(function, example, path, variant.dump_options(), names=outputs)
    except HarnessError:
        raise
    except Exception as err:  # the user's model, MegEngine's trace: any failure is one line
        height, width = model.preprocess.size
        raise HarnessError(
            f"{model.name} variant {variant.id}: fails when traced on a {example.dtype} input "
            f"of shape {example.shape} (model size {height}x{width}; choose it with --size): "
            f"{type(err).__name__}: {first_line(err)}"
        ) from None
    return {**dump, "outputs": dict(outputs)}


def dump_preprocessing(spec: PreprocessSpec, path: Path, preprocessing: str = "fused") -> dict:
    """Dumps a raw-input preprocessing recipe on its own (input ``data``, output ``pixels``).

    With mean 0 and std 1 in ``spec`` the output is the resized image itself, NCHW float32,
    which is what the pixel-level check compares with ``cv2.resize``.
    """
    recipe = preprocessing_recipe(preprocessing)
    example = np.zeros((1, spec.size[0] + 3, spec.size[1] + 5, 3), np.uint8)
    options = {"arg_names": ["data"], "output_names": ["pixels"], "optimize_for_inference": True}
    return dump_graph(lambda data: recipe(data, spec), example, Path(path), options)


def dump_graph(function, example: np.ndarray, path: Path, options: dict, names=None) -> dict:
    """Traces ``function`` on ``example`` and dumps it to ``path`` atomically.

    Traced imperatively (``symbolic=False``, MegEngine's default): a symbolic trace of the
    gather-based resize followed by a convolution segfaults in MegEngine 1.13. ``names``, when
    given, is filled by the trace with the output names, which replace ``output_names``.
    """
    import megengine as mge
    from megengine.jit import trace

    traced = trace(function, capture_as_const=True)
    traced(mge.tensor(example))
    if names is not None:
        options = {**options, "output_names": list(names)}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        result = traced.dump(str(tmp), **options)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return {"nr_opr": int(result.nr_opr), "tot_bytes": int(result.tot_bytes)}


def _prepare_folder(out_dir: Path) -> Path:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise HarnessError(f"{out_dir}: cannot create the output folder ({err.strerror})") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise HarnessError(f"{out_dir}: output folder is not writable")
    return out_dir.resolve()


def _previous_entries(out_dir: Path) -> tuple[dict[str, VariantEntry], tuple | None]:
    """Variants and outputs recorded by an earlier export into this folder (none if it has no
    valid manifest)."""
    if not (out_dir / MANIFEST).exists():
        return {}, None
    try:
        manifest = load_manifest(out_dir, verify=False)
    except HarnessError:
        return {}, None
    return {e.id: e for e in manifest.variants}, manifest.outputs


def _reusable(entry: VariantEntry | None, key: str) -> bool:
    if entry is None or entry.provenance.get("cache_key") != key or not entry.path.is_file():
        return False
    return file_sha256(entry.path) == entry.provenance.get("sha256")


def export_release(
    model: ModelSpec,
    out_dir: str | Path,
    variants: list[Variant] | None = None,
    progress: Progress | None = stderr_progress,
    force: bool = False,
) -> Manifest:
    """Writes one ``.mge`` per variant and ``manifest.json`` into ``out_dir``; returns the manifest.

    Variants whose cache key and file hash match the folder's previous manifest are reused
    unless ``force``. ``variants`` defaults to the default matrix; ``progress`` gets one line
    per variant (pass None for silence).
    """
    say = progress or (lambda message: None)
    existed = Path(out_dir).exists()
    root = _prepare_folder(Path(out_dir))
    try:
        with _folder_lock(root, say):
            return _export_locked(model, root, variants, say, force)
    except BaseException:
        _clean_failed_export(root, existed)
        raise


def _clean_failed_export(root: Path, existed: bool) -> None:
    """After a failed export into a folder that holds no release: removes the lock file, and the
    folder itself (with any dumps of this run) when this export created it. A folder with a
    manifest (an earlier release) keeps everything: its files are still valid."""
    if (root / MANIFEST).exists():
        return
    if existed:
        (root / LOCK).unlink(missing_ok=True)
    else:  # created by this export, which held the lock: nothing in it is anyone else's
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def _folder_lock(root: Path, say: Progress):
    """One exporter per folder at a time; a second waits, then finds the files cached.

    Temporary files left by an exporter that was killed are removed once the lock is held
    (no other exporter can be writing them then).
    """
    with open(root / LOCK, "a+b") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another export into {root} to finish ...")
            fcntl.flock(lock, fcntl.LOCK_EX)
        for stale in root.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _export_locked(model: ModelSpec, root: Path, variants, say: Progress, force: bool) -> Manifest:
    variants = variants or default_matrix(model.name)
    previous, outputs = _previous_entries(root)
    module = None
    entries = []
    for index, variant in enumerate(variants, 1):
        started = time.perf_counter()
        key = cache_key(model, variant)
        path = root / variant.file
        if not force and _reusable(previous.get(variant.id), key):
            entries.append(previous[variant.id])
            say(f"[{index}/{len(variants)}] {variant.id}: cached")
            continue
        if module is None:
            say(f"building {model.name} ...")
            module = model.build()
        dump = dump_variant(_quantized(module, model, variant), model, variant, path)
        shapes = dump.pop("outputs")
        outputs = outputs or default_kinds(shapes)
        provenance = {
            "sha256": file_sha256(path),
            "cache_key": key,
            "megengine_version": megengine_version(),
            "dump_options": {**variant.dump_options(), "output_names": list(shapes)},
            "op_histogram": op_histogram(path),
            **dump,
        }
        entries.append(
            VariantEntry(
                id=variant.id,
                file=variant.file,
                preprocessing=variant.preprocessing,
                fuse_conv_bias_nonlinearity=variant.fuse_conv_bias_nonlinearity,
                input=default_input(variant.preprocessing, model.preprocess),
                path=path,
                expected_failure=variant.expected_failure,
                provenance=provenance,
                quantization=variant.quantization,
            )
        )
        seconds = time.perf_counter() - started
        say(
            f"[{index}/{len(variants)}] {variant.id}: exported in {seconds:.1f} s ({dump['tot_bytes'] / 1e6:.1f} MB)"
        )
    extra = {"builtin": model.builtin, "fingerprint": model.fingerprint}
    source = _write_source(model, module or model.build(), root) if model.factory else None
    manifest = Manifest(
        root, model.name, model.preprocess, tuple(entries), extra, source, outputs=outputs
    )
    write_manifest(manifest)
    return manifest


def _quantized(module, model: ModelSpec, variant: Variant):
    """``module`` itself, or its int8 quantization for a quantized variant (``exporters.int8``)."""
    if variant.quantization is None:
        return module
    from mge_harness.exporters.int8 import int8_module

    return int8_module(module, model)


WEIGHTS = "weights.npz"


def _write_source(model: ModelSpec, module, root: Path) -> ModelSource:
    """Writes the exported weights beside the dumps (``weights.npz``): the gate rebuilds the
    eager module from the factory and these, whatever the factory's own initialisation does."""
    from mge_harness.exporters.files import atomic_write_bytes
    from mge_harness.exporters.zoo import state_dict_npz

    path = root / WEIGHTS
    atomic_write_bytes(path, state_dict_npz(module))
    return ModelSource(model.factory, path, file_sha256(path))


__all__ = [
    "cache_key",
    "dump_graph",
    "dump_preprocessing",
    "dump_variant",
    "example_input",
    "export_release",
    "op_histogram",
]
