"""Read PyTorch's legacy (non-zip) state-dict files with numpy alone: no torch, no free unpickling.

The legacy format (``torch.save(..., _use_new_zipfile_serialization=False)``, the only format
before torch 1.6) is five back-to-back pickles and then raw data:

1. a magic number, 2. the protocol version 1001, 3. a dict of system info (byte order),
4. the state dict itself, whose tensors are ``torch._utils._rebuild_tensor_v2(storage, offset,
   size, stride, ...)`` calls and whose storages are persistent ids
   ``("storage", torch.FloatStorage, key, location, numel, view)``,
5. the list of storage keys, then for each key in that order an 8-byte little-endian element
   count followed by the storage's raw bytes.

Unpickling runs whatever callables a file names, so the unpickler here (a
``safepickle.RestrictedUnpickler``) resolves only the few globals tensor storage needs, to local
stand-ins that build plain records, and refuses every other global with a ``HarnessError``.
Tensors keep their storage offset, size and stride: weights converted from TensorFlow are often
stored as transposed (non-contiguous) views, and reading them as contiguous gives garbage.
"""

from __future__ import annotations

import collections
import io
import struct
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from mge_harness.exporters.errors import HarnessError
from mge_harness.exporters.safepickle import RestrictedUnpickler

_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_PROTOCOL_VERSION = 1001
_ZIP_MAGIC = b"PK\x03\x04"

#: Storage class name -> element dtype as stored (little-endian, checked in the system info).
_STORAGE_DTYPES = {
    "DoubleStorage": "<f8",
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


# Records are NamedTuples: no __dict__ and no __setstate__, so a BUILD opcode aimed at one fails
# instead of rewriting its fields (a slots dataclass would accept BUILD through __setstate__).
class _StorageType(NamedTuple):
    """Stand-in for a ``torch.<X>Storage`` class: a name and a dtype, not callable."""

    name: str
    dtype: np.dtype


class _StorageRef(NamedTuple):
    key: str
    dtype: np.dtype
    numel: int


class _TensorRef(NamedTuple):
    """What ``_rebuild_tensor_v2`` describes; validated and materialised after unpickling."""

    storage: Any
    offset: Any
    size: Any
    stride: Any


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *_ignored) -> _TensorRef:
    """Stand-in for ``torch._utils._rebuild_tensor_v2``; the extra arguments (requires_grad,
    backward hooks, metadata) do not affect the values."""
    return _TensorRef(storage, storage_offset, size, stride)


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    **{("torch", n): _StorageType(n, np.dtype(d)) for n, d in _STORAGE_DTYPES.items()},
}


class _TorchUnpickler(RestrictedUnpickler):
    """Resolves only ``_ALLOWED_GLOBALS``; storage persistent ids become ``_StorageRef``s."""

    def __init__(self, file, source: str, storages: dict[str, _StorageRef]):
        super().__init__(file, _ALLOWED_GLOBALS, source)
        self._file_name = source
        self._storages = storages

    def persistent_load(self, pid):
        ok = isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"
        if not ok or not isinstance(pid[1], _StorageType):
            raise HarnessError(f"{self._file_name}: unexpected persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel, view = pid
        if view is not None:
            raise HarnessError(f"{self._file_name}: storage views are not supported (key {key!r})")
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise HarnessError(f"{self._file_name}: malformed storage record {pid!r:.80}")
        ref = self._storages.setdefault(key, _StorageRef(key, storage_type.dtype, numel))
        if ref != _StorageRef(key, storage_type.dtype, numel):
            raise HarnessError(f"{self._file_name}: storage {key!r} is declared twice differently")
        return ref


def load_legacy_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Reads a legacy-format PyTorch state dict into ``{name: contiguous numpy array}``.

    Raises HarnessError (one line naming the file) for an empty, truncated, zip-format or
    otherwise unreadable file, and for any pickled global other than tensor storage.
    """
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise HarnessError(f"{source}: cannot read weights file ({err.strerror})") from None
    if not data:
        raise HarnessError(f"{source}: empty file, expected a legacy PyTorch state dict")
    if data.startswith(_ZIP_MAGIC):
        raise HarnessError(
            f"{source}: zip-format PyTorch file; only the legacy (non-zip) format is supported"
        )
    stream = io.BytesIO(data)
    storages: dict[str, _StorageRef] = {}
    try:
        state, keys = _read_pickles(stream, source, storages)
    except HarnessError:
        raise
    except Exception as err:  # whatever a corrupt pickle stream raises (EOFError, KeyError, ...)
        raise HarnessError(
            f"{source}: not a readable legacy PyTorch file ({type(err).__name__}: {err})"
        ) from None
    arrays = _read_storages(stream, data, keys, storages, source)
    return {name: _materialize(name, ref, arrays, source) for name, ref in state.items()}


def _read_pickles(stream, source: str, storages: dict) -> tuple[dict, list]:
    """Reads the four pickles before the raw data: header checks, state dict, storage keys."""

    def load():
        return _TorchUnpickler(stream, source, storages).load()

    if load() != _MAGIC_NUMBER:
        raise HarnessError(f"{source}: not a legacy PyTorch file (bad magic number)")
    if load() != _PROTOCOL_VERSION:
        raise HarnessError(f"{source}: unsupported PyTorch file protocol version")
    info = load()
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise HarnessError(f"{source}: only little-endian PyTorch files are supported")
    state = load()
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise HarnessError(f"{source}: expected a state dict (name -> tensor) in the file")
    keys = load()
    if not isinstance(keys, list) or set(keys) != set(storages) or len(keys) != len(storages):
        raise HarnessError(f"{source}: storage key list does not match the tensors' storages")
    return state, keys


def _read_storages(stream, data: bytes, keys: list, storages: dict, source: str) -> dict:
    """Slices each storage's raw bytes out of ``data``, in file order, as 1-D arrays."""
    arrays = {}
    pos = stream.tell()
    for key in keys:
        ref = storages[key]
        nbytes = ref.numel * ref.dtype.itemsize
        if pos + 8 + nbytes > len(data):
            raise HarnessError(
                f"{source}: truncated file: storage {key!r} needs {nbytes} bytes at offset "
                f"{pos + 8}, the file has {len(data)} bytes"
            )
        (count,) = struct.unpack_from("<q", data, pos)
        if count != ref.numel:
            raise HarnessError(
                f"{source}: storage {key!r} holds {count} elements, the state dict says {ref.numel}"
            )
        arrays[key] = np.frombuffer(data, ref.dtype, ref.numel, pos + 8)
        pos += 8 + nbytes
    return arrays


def _materialize(name: str, ref: Any, arrays: dict, source: str) -> np.ndarray:
    """A C-contiguous copy of the strided view that ``ref`` describes, bounds-checked first."""
    if not isinstance(ref, _TensorRef) or not isinstance(ref.storage, _StorageRef):
        raise HarnessError(f"{source}: {name!r} is not a tensor ({type(ref).__name__})")
    if not _is_layout(ref.offset, ref.size, ref.stride):
        raise HarnessError(
            f"{source}: {name!r} has a malformed storage offset/size/stride "
            f"{ref.offset!r}/{ref.size!r}/{ref.stride!r}"
        )
    storage = arrays[ref.storage.key]
    if 0 in ref.size:
        return np.empty(ref.size, storage.dtype.newbyteorder("="))
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
    if last >= storage.size:
        raise HarnessError(
            f"{source}: {name!r} reaches element {last} of a storage of {storage.size} elements"
        )
    strides = [s * storage.dtype.itemsize for s in ref.stride]
    view = np.lib.stride_tricks.as_strided(storage[ref.offset :], ref.size, strides)
    return np.array(view, storage.dtype.newbyteorder("="), order="C")


def _is_layout(offset: Any, size: Any, stride: Any) -> bool:
    """True for a non-negative int offset and equally long tuples of non-negative ints."""
    if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)):
        return False
    return all(type(v) is int and v >= 0 for v in (offset, *size, *stride))
