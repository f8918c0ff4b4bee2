"""The release under test in a pytest session: resolved and validated once, shared by everyone.

The harness plugin's fixtures (``mge_harness.pytest_plugin``), the gate's plugin and the
benchmarks' plugin all ask for the release
(the plugins during collection, since variant ids are test ids). ``session_release(config)``
resolves ``--release`` (or exports the built-in ``--model`` release), loads and verifies its
manifest (hashing every ``.mge`` once) and caches the outcome on the pytest config, so every
caller sees the same manifest or the same one-line error.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mge_harness.exporters.errors import HarnessError
from mge_harness.exporters.manifest import Manifest


@dataclass(frozen=True)
class SessionRelease:
    """The session's release: its manifest, or the one-line reason there is none."""

    manifest: Manifest | None
    error: str | None = None

    def require(self) -> Manifest:
        """The manifest; a ``pytest.UsageError`` (one ``ERROR:`` line) when the release is bad."""
        if self.manifest is None:
            raise pytest.UsageError(self.error)
        return self.manifest


_KEY = pytest.StashKey[SessionRelease]()


def with_eager_option(manifest: Manifest, factory: str | None, weights: str | None) -> Manifest:
    """The manifest with ``--eager pkg.module:factory [--weights W]`` as its model ``source``
    (overriding one the manifest records): how a hand-written release gets its eager check."""
    from dataclasses import replace
    from pathlib import Path

    from mge_harness.exporters.manifest import ModelSource, file_sha256
    from mge_harness.exporters.zoo import is_factory_reference

    if factory is None:
        if weights is not None:
            raise HarnessError(f"--weights {weights}: only with --eager pkg.module:factory")
        return manifest
    if not is_factory_reference(factory):
        raise HarnessError(f"--eager {factory!r}: expected package.module:factory")
    path = None
    if weights is not None:
        path = Path(weights).resolve()
        if not path.is_file():
            raise HarnessError(f"--weights {weights}: no such file; expected a state dict file")
    sha = file_sha256(path) if path else None
    return replace(manifest, source=ModelSource(factory, path, sha, origin="--eager"))


def release_requested(config) -> bool:
    """Whether anything in this session has asked for its release yet."""
    return _KEY in config.stash


def session_release(config) -> SessionRelease:
    """The release of this pytest session (``--release`` or the built-in ``--model``), loaded
    once per process."""
    if _KEY not in config.stash:
        from mge_harness.exporters.manifest import load_manifest
        from mge_harness.exporters.quiet import probe_cuda_quietly
        from mge_harness.exporters.release import resolve_release

        # MegEngine's CUDA probe chatter (nine info:/debug: lines on a machine without a GPU)
        # is triggered with stderr silenced, before anything exports or loads a model; a
        # given release folder is read first, so one that is refused never imports MegEngine
        # (0.4-0.8 s of a one-line error).
        release = config.getoption("release")
        try:
            if not release:
                probe_cuda_quietly()
            root = resolve_release(release, config.getoption("model"))
            manifest = with_eager_option(
                load_manifest(root),
                config.getoption("eager", None),
                config.getoption("weights", None),
            )
            config.stash[_KEY] = SessionRelease(manifest)
        except HarnessError as err:
            config.stash[_KEY] = SessionRelease(None, str(err))
        else:
            probe_cuda_quietly()
    return config.stash[_KEY]
