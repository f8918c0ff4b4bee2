"""Built-in releases, exported on demand into a cache folder and reused while valid."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from mge_harness.exporters.export import Progress, export_release, stderr_progress
from mge_harness.exporters.zoo import BUILTIN_MODELS, builtin_spec

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_root() -> Path:
    """Where built-in releases live: ``$MGE_HARNESS_CACHE``. Defaults to ``<repo>/.harness-cache``
    when running from a source checkout of this project, else to the user's cache folder,
    ``$XDG_CACHE_HOME/mge-harness`` (``~/.cache/mge-harness``)."""
    from mge_harness.exporters.version import source_checkout

    if os.environ.get("MGE_HARNESS_CACHE"):
        return Path(os.environ["MGE_HARNESS_CACHE"])
    checkout = source_checkout()
    if checkout is not None:
        return checkout / ".harness-cache"
    user_cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(user_cache) / "mge-harness"


def builtin_release(
    model: str = "resnet18", cache_dir=None, progress: Progress | None = stderr_progress
) -> Path:
    """Exports the built-in model's default release if needed; returns the release folder."""
    spec = builtin_spec(model)
    folder = Path(cache_dir) if cache_dir else cache_root() / "releases" / model
    export_release(spec, folder, progress=progress)
    return folder


def resolve_release(release: str | Path | None, model: str = "resnet18") -> Path:
    """The release folder a session works on: ``release`` if given, else the built-in
    ``model``'s, exported on demand. Exported (or verified as cached) once per process, since
    several pytest plugins ask during collection."""
    if release:
        return Path(release)
    return _cached_builtin_release(model)


@cache
def _cached_builtin_release(model: str) -> Path:
    return builtin_release(model)


def eager_source(manifest) -> str | None:
    """What the eager module of ``manifest``'s model is rebuilt from ("built-in resnet18",
    "tests.userzoo:small_net with weights.npz"), or None when the release carries no way to
    rebuild it (a hand-written manifest without ``source`` and no ``--eager``)."""
    from mge_harness.exporters.zoo import BUILTIN_MODELS, builtin_spec

    source = manifest.source
    if source is not None:
        weights = f" with {source.weights.name}" if source.weights else ""
        return f"{source.factory}{weights}"
    builtin = manifest.extra.get("builtin") is True and manifest.model in BUILTIN_MODELS
    if builtin and manifest.extra.get("fingerprint") == builtin_spec(manifest.model).fingerprint:
        return f"built-in {manifest.model}"
    return None


def eager_module(manifest):
    """The eager MegEngine module ``manifest``'s variants were traced from (``eager_source``);
    HarnessError in one line when its source cannot be built or holds other weights."""
    from mge_harness.exporters.errors import HarnessError
    from mge_harness.exporters.zoo import build_factory, weights_digest

    source = manifest.source
    if source is None:
        return builtin_module(manifest.model)
    option = (
        "--eager" if source.origin == "--eager" else f"{manifest.root / 'manifest.json'}: source"
    )
    module = build_factory(source.factory, source.weights, option)
    recorded = str(manifest.extra.get("fingerprint", "")).rpartition(":weights=")[2]
    if recorded and len(recorded) == 64 and weights_digest(module) != recorded:
        hint = (
            "pass the exported weights with --weights"
            if source.weights is None
            else (f"{source.weights.name} is not what the release was exported with")
        )
        raise HarnessError(
            f"{option} {source.factory}: builds other weights than the release was exported "
            f"with (a random initialisation?); {hint}"
        )
    return module


def builtin_module(model: str):
    """The eager MegEngine module of a built-in model, with the weights its exports carry.

    None when ``model`` is not a built-in (a user's release): checks that need the eager model
    skip then.
    """
    if model not in BUILTIN_MODELS:
        return None
    return builtin_spec(model).build()
