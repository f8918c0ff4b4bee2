"""The legacy PyTorch reader: layout handling, bad files, and refusal of pickled code.

Files are written here opcode by opcode in the legacy layout (magic, protocol, system info,
state dict, storage keys, then each storage as an int64 count plus raw bytes), so the tests
need no torch.
"""

from __future__ import annotations

import builtins
import os
import pickle
import re

import numpy as np
import pytest

from mge_harness.exporters.errors import HarnessError
from mge_harness.exporters.models.torchfile import load_legacy_state_dict

_STORAGE_CLASSES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.int64): "LongStorage"}
_SYS_INFO = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"long": 8}}


def _value(value) -> bytes:
    """Opcodes pushing ``value`` (str, int, None or a tuple of them): a pickle minus PROTO, STOP."""
    return pickle.dumps(value, protocol=2)[2:-1]


def _global(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def _call(func: bytes, *args: bytes) -> bytes:
    return func + pickle.MARK + b"".join(args) + pickle.TUPLE + pickle.REDUCE


def _pickle(body: bytes) -> bytes:
    return pickle.PROTO + b"\x02" + body + pickle.STOP


def _tensor(key: str, storage: np.ndarray, offset: int, size: tuple, stride: tuple) -> bytes:
    """``_rebuild_tensor_v2(<persistent storage>, offset, size, stride, False, OrderedDict())``."""
    storage_class = _global("torch", _STORAGE_CLASSES[storage.dtype])
    pid = (
        pickle.MARK
        + _value("storage")
        + storage_class
        + _value(key)
        + _value("cpu")
        + _value(storage.size)
        + pickle.NONE
        + pickle.TUPLE
    )
    hooks = _call(_global("collections", "OrderedDict"))
    args = [pid + pickle.BINPERSID, _value(offset), _value(size), _value(stride)]
    return _call(_global("torch._utils", "_rebuild_tensor_v2"), *args, pickle.NEWFALSE, hooks)


def _state_pickle(tensors: dict, storages: dict[str, np.ndarray]) -> bytes:
    """``OrderedDict`` of ``tensors`` (name -> (storage key, offset, size, stride))."""
    state = _call(_global("collections", "OrderedDict"))
    for name, (key, offset, size, stride) in tensors.items():
        state += _value(name) + _tensor(key, storages[key], offset, size, stride) + pickle.SETITEM
    return _pickle(state)


def legacy_bytes(tensors: dict, storages: dict[str, np.ndarray], *, header=None, state=None):
    """A legacy file holding ``tensors``; ``header``/``state`` replace the first/fourth pickle."""
    raw = b"".join(np.int64(a.size).tobytes() + a.tobytes() for a in storages.values())
    return (
        (header if header is not None else pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2))
        + pickle.dumps(1001, protocol=2)
        + pickle.dumps(_SYS_INFO, protocol=2)
        + (state if state is not None else _state_pickle(tensors, storages))
        + pickle.dumps(list(storages), protocol=2)
        + raw
    )


@pytest.fixture
def base():
    return np.arange(12, dtype=np.float32).reshape(3, 4) * 0.5 - 1.0


@pytest.fixture
def sample(base):
    """Tensors that share storages through offsets and strides, as converted checkpoints do."""
    storages = {"10": base.ravel(), "20": np.array([7], np.int64)}
    tensors = {
        "plain": ("10", 0, (3, 4), (4, 1)),
        "transposed": ("10", 0, (4, 3), (1, 4)),
        "column": ("10", 2, (3,), (4,)),
        "broadcast": ("10", 5, (2, 3), (0, 1)),
        "empty": ("10", 0, (0, 4), (4, 1)),
        "counter": ("20", 0, (), ()),
    }
    return legacy_bytes(tensors, storages)


def _write(tmp_path, data: bytes, name="weights.pth"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _load_error(path) -> str:
    with pytest.raises(HarnessError) as info:
        load_legacy_state_dict(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_reads_offsets_strides_and_dtypes(tmp_path, sample, base):
    state = load_legacy_state_dict(_write(tmp_path, sample))
    assert list(state) == ["plain", "transposed", "column", "broadcast", "empty", "counter"]
    np.testing.assert_array_equal(state["plain"], base)
    np.testing.assert_array_equal(state["transposed"], base.T)
    np.testing.assert_array_equal(state["column"], base[:, 2])
    np.testing.assert_array_equal(state["broadcast"], np.broadcast_to(base.ravel()[5:8], (2, 3)))
    assert state["empty"].shape == (0, 4)
    assert state["counter"].shape == () and state["counter"] == 7
    assert state["counter"].dtype == np.int64 and state["plain"].dtype == np.float32


def test_arrays_are_contiguous_writable_copies(tmp_path, sample):
    state = load_legacy_state_dict(_write(tmp_path, sample))
    for array in state.values():
        assert array.flags["C_CONTIGUOUS"] and array.flags["OWNDATA"] and array.flags["WRITEABLE"]
    state["transposed"][0, 0] = 99.0
    assert state["plain"][0, 0] != 99.0


class _Payload:
    """Pickles as ``func(*args)``, the classic ``__reduce__`` code-execution payload."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payload(kind: str, marker) -> _Payload:
    """A payload that creates ``marker`` if it is ever executed."""
    return {
        "os.system": _Payload(os.system, f"touch {marker}"),
        "builtins.open": _Payload(builtins.open, str(marker), "w"),
        "builtins.eval": _Payload(builtins.eval, f"open({str(marker)!r}, 'w')"),
    }[kind]


@pytest.mark.parametrize("protocol", [0, 2, 4])
@pytest.mark.parametrize("kind", ["os.system", "builtins.open", "builtins.eval"])
@pytest.mark.parametrize("section", ["header", "state dict"])
def test_code_in_the_pickle_is_refused_and_not_run(tmp_path, protocol, kind, section):
    marker = tmp_path / "pwned"
    payload = _payload(kind, marker)
    if section == "header":
        data = legacy_bytes({}, {}, header=pickle.dumps(payload, protocol=protocol))
    else:
        data = legacy_bytes({}, {}, state=pickle.dumps({"w": payload}, protocol=protocol))
    message = _load_error(_write(tmp_path, data))
    # Protocols < 3 spell the module the Python 2 way ('__builtin__'), so match the name only.
    assert re.search(rf"refused to unpickle '[\w.]+\.{payload.func.__name__}'", message)
    assert not marker.exists()


def test_build_on_a_tensor_record_fails_cleanly(tmp_path):
    """BUILD cannot rewrite a tensor record's fields: the record has no __dict__ or __setstate__."""
    storages = {"1": np.zeros(2, np.float32)}
    state = _call(_global("collections", "OrderedDict")) + _value("w")
    state += _tensor("1", storages["1"], 0, (2,), (1,)) + _value({"offset": 10**9}) + pickle.BUILD
    data = legacy_bytes({}, storages, state=_pickle(state + pickle.SETITEM))
    assert "not a readable legacy PyTorch file" in _load_error(_write(tmp_path, data))


def test_out_of_bounds_view_is_refused(tmp_path):
    data = legacy_bytes({"w": ("1", 3, (2, 2), (2, 1))}, {"1": np.zeros(6, np.float32)})
    assert "reaches element 6 of a storage of 6 elements" in _load_error(_write(tmp_path, data))


def test_empty_file(tmp_path):
    assert "empty file" in _load_error(_write(tmp_path, b""))


def test_zip_format_is_named(tmp_path):
    assert "zip-format" in _load_error(_write(tmp_path, b"PK\x03\x04" + bytes(60)))


def test_random_bytes(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    assert "legacy PyTorch" in _load_error(_write(tmp_path, data))


def test_wrong_magic_number(tmp_path, sample):
    data = legacy_bytes({}, {}, header=pickle.dumps(12345, protocol=2))
    assert "bad magic number" in _load_error(_write(tmp_path, data))


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_truncated_file(tmp_path, sample, keep):
    _load_error(_write(tmp_path, sample[: int(len(sample) * keep)]))


def test_truncated_storage_data_says_so(tmp_path, sample):
    assert "truncated file" in _load_error(_write(tmp_path, sample[:-4]))


def test_missing_file(tmp_path):
    assert "cannot read" in _load_error(tmp_path / "absent.pth")
