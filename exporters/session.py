"""The release under test in a pytest session: resolved and validated once, shared by everyone.

The root conftest's fixtures, the gate's plugin and the benchmarks' plugin all ask for the release
(the plugins during collection, since variant ids are test ids). ``session_release(config)``
resolves ``--release`` (or exports the built-in ``--model`` release), loads and verifies its
manifest (hashing every ``.mge`` once) and caches the outcome on the pytest config, so every
caller sees the same manifest or the same one-line error.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from exporters.errors import HarnessError
from exporters.manifest import Manifest


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


def session_release(config) -> SessionRelease:
    """The release of this pytest session (``--release`` or the built-in ``--model``), loaded
    once per process."""
    if _KEY not in config.stash:
        from exporters.manifest import load_manifest
        from exporters.release import resolve_release

        try:
            root = resolve_release(config.getoption("release"), config.getoption("model"))
            config.stash[_KEY] = SessionRelease(load_manifest(root))
        except HarnessError as err:
            config.stash[_KEY] = SessionRelease(None, str(err))
    return config.stash[_KEY]
