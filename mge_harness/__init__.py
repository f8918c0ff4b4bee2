"""The harness's one installed package: ``mge_harness.exporters``, ``.equivalence``, ``.bench``,
``.reports``, the ``mge-harness`` command (``mge_harness.cli``) and the pytest plugin.

``mge_harness.pytest_plugin`` is what an installed harness adds to every pytest run (by its
``pytest11`` entry point); ``mge_harness.cli`` is the ``mge-harness`` command. Both sit above the
four subpackages and only import them when used.

Why this layout: the repository keeps ``exporters/``, ``equivalence/``, ``bench/`` and
``reports/`` at its top level, as people see and run them (``python -m exporters``, ``pytest
equivalence/``), while an installed harness must not take those common names from a user's own
folders. The wheel maps them under this package (``package-dir`` in ``pyproject.toml``), and all
of the harness's own imports name ``mge_harness.<package>``. In a source checkout that is not
installed, this package's ``__path__`` also holds the repository root, so the same imports find
the same folders; there, the top-level names still import as well (each such import loads a
second copy of the module it names, so code that compares classes or errors should import
``mge_harness.<package>``, as the harness does).
"""

from pathlib import Path as _Path

_HERE = _Path(__file__).resolve().parent
if not (_HERE / "exporters").is_dir() and (_HERE.parent / "exporters" / "__init__.py").is_file():
    __path__.append(str(_HERE.parent))  # a source checkout: the subpackages are its folders
