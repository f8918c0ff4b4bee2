"""Reading pickled weights without running arbitrary code.

``pickle.load`` executes whatever a file asks for. A restricted unpickler resolves only the
globals on an allow-list and refuses everything else *before* anything is called.
"""

from __future__ import annotations

import io
import pickle
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mge_harness.exporters.errors import HarnessError
from mge_harness.exporters.files import check_regular


def _numpy_globals() -> dict[tuple[str, str], Any]:
    from numpy.core import multiarray

    allowed = {}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    allowed[("collections", "OrderedDict")] = OrderedDict
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only ``allowed[(module, name)]`` and refuses the rest.

    ``source`` names the file in the error message.
    """

    def __init__(self, file, allowed: Mapping[tuple[str, str], Any], source: str):
        super().__init__(file)
        self._allowed = allowed
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise HarnessError(
                f"{self._source}: refused to unpickle '{module}.{name}'; only numpy arrays in "
                "a dict (a state dict) are allowed"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise HarnessError(f"{self._source}: refused a persistent id in the pickle stream")


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Loads a state dict (name -> array) from ``.npz`` or a pickle of numpy arrays.

    Pickles are what ``megengine.save(module.state_dict(), f)`` writes; they are read with
    ``RestrictedUnpickler``, so a hostile file is refused without running anything.
    """
    path = Path(path)
    check_regular(path, "a weights file (.npz or a megengine.save pickle)")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise HarnessError(f"{path}: cannot read weights ({err.strerror or err})") from None
    if not data:
        raise HarnessError(f"{path}: weights file is empty; expected a state dict")
    if data[:2] == b"PK":
        return _load_npz(path, data)
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), _numpy_globals(), str(path)).load()
    except HarnessError:
        raise
    except Exception as err:
        raise HarnessError(
            f"{path}: not a readable state dict ({type(err).__name__}: {err}); expected "
            ".npz or the pickle that megengine.save(module.state_dict(), f) writes"
        ) from None
    return _check_state_dict(obj, path)


def _load_npz(path: Path, data: bytes) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except Exception as err:
        raise HarnessError(f"{path}: not a readable .npz state dict ({err})") from None


def _check_state_dict(obj: Any, path: Path) -> dict[str, np.ndarray]:
    if not isinstance(obj, Mapping):
        raise HarnessError(
            f"{path}: expected a state dict (name -> array), got {type(obj).__name__}"
        )
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, np.ndarray)]
    if bad:
        raise HarnessError(f"{path}: entry {bad[0]!r} is not a named numpy array")
    return dict(obj)
