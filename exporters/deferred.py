"""Leave MegEngine's download stack unloaded until something uses it.

``import megengine`` imports ``megengine.hub`` (its persistent cache asks the hub for its home
folder), and the hub imports its HTTP download helpers at module level: ``megfile`` (with
boto3 and paramiko behind it) and ``requests``. No harness process downloads anything through
MegEngine, yet that stack was 0.1-0.2 s of the 0.4-0.6 s every process spends importing
MegEngine, and a gate run starts several processes (its crash probe, the reproduce commands;
the test suite about 300). Lite's ``LiteNetwork.load(path)`` opens a path with
``megfile.smart_open`` too, so the harness loads networks from an open file instead
(``exporters.runners.load_network``).

``defer_megengine_downloads()``, called before MegEngine is first imported, puts stand-ins in
``sys.modules`` that load the real package the first time anything is used:

- ``requests`` is a module of Python's own ``importlib.util.LazyLoader``: the real module runs
  on its first attribute access.
- ``megfile`` cannot be one, since ``megengine.utils.http_download`` imports three functions
  from it by name (``from megfile import smart_copy, ...``), which is an attribute access. Its
  stand-in holds forwarding functions for those three names; any other attribute, and any
  call of the three, imports the real ``megfile`` (which then replaces the stand-in in
  ``sys.modules``, so later imports get the real package). Submodules (``import megfile.s3``)
  import as usual: the stand-in carries the package's search path.

Nothing changes for a process that imported either package before.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

#: What ``megengine.utils.http_download`` imports from megfile by name (MegEngine 1.13).
MEGFILE_NAMES = ("smart_copy", "smart_getmd5", "smart_getsize")


def defer_megengine_downloads() -> None:
    """Installs the stand-ins (once; a no-op for a package already imported or not found)."""
    if "megengine" in sys.modules:
        return
    _lazy_module("requests")
    _megfile_stand_in()


def _lazy_module(name: str) -> None:
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


class _StandIn(types.ModuleType):
    """``megfile`` until it is used (see the module docstring)."""

    def __getattr__(self, name: str):  # any name it lacks, ``__version__`` included
        return getattr(_real_megfile(), name)


def _real_megfile() -> types.ModuleType:
    module = sys.modules.get("megfile")
    if isinstance(module, _StandIn):
        del sys.modules["megfile"]
        try:
            return importlib.import_module("megfile")
        except BaseException:
            sys.modules.setdefault("megfile", module)
            raise
    return importlib.import_module("megfile")


def _forward(name: str):
    def forwarded(*args, **kwargs):
        return getattr(_real_megfile(), name)(*args, **kwargs)

    forwarded.__name__ = forwarded.__qualname__ = name
    forwarded.__doc__ = f"megfile.{name}, imported on first call."
    return forwarded


def _megfile_stand_in() -> None:
    if "megfile" in sys.modules:
        return
    spec = importlib.util.find_spec("megfile")
    if spec is None or spec.submodule_search_locations is None:
        return
    stand_in = _StandIn("megfile", "megfile, imported on first use (mge_harness)")
    stand_in.__path__ = list(spec.submodule_search_locations)
    stand_in.__file__ = spec.origin  # what tools walking sys.modules read (Hypothesis does)
    for name in MEGFILE_NAMES:
        setattr(stand_in, name, _forward(name))
    sys.modules["megfile"] = stand_in
