"""Root pytest configuration: the release under test, Hypothesis profiles, suite plugins.

``--release DIR`` names the release folder that ``equivalence/`` gates and ``bench/`` times;
without it both use the built-in ResNet18 release, exported on demand and cached. Hypothesis
profiles are picked with Hypothesis's own ``--hypothesis-profile`` (default ``dev``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from exporters.probe import DEFAULT_TIMEOUT_S

pytest_plugins = ["equivalence.plugin", "bench.plugin"]

_SLOW_DATA = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]

settings.register_profile("dev", max_examples=10, deadline=None, suppress_health_check=_SLOW_DATA)
settings.register_profile(
    "ci",
    max_examples=20,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=_SLOW_DATA,
)
settings.register_profile(
    "release", max_examples=500, deadline=None, print_blob=True, suppress_health_check=_SLOW_DATA
)
settings.load_profile("dev")


def pytest_addoption(parser):
    parser.addoption(
        "--release",
        metavar="DIR",
        help="release folder (manifest.json + .mge files) to gate or benchmark; "
        "defaults to the built-in ResNet18 release, exported on demand and cached",
    )
    parser.addoption(
        "--model",
        metavar="NAME",
        default="resnet18",
        help="built-in model whose release is used when --release is not given (default: resnet18)",
    )
    parser.addoption(
        "--probe-timeout",
        metavar="SECONDS",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help="seconds one variant's crash-isolation probe (a child process that loads and runs "
        f"it before the gate or a benchmark does) may take before it counts as hung "
        f"(default: {DEFAULT_TIMEOUT_S:g})",
    )


def pytest_configure(config):
    """MegEngine's CUDA probe chatter (nine info:/debug: lines on a machine without a GPU) is
    triggered here with stderr silenced, before anything exports or loads a model."""
    from exporters.quiet import probe_cuda_quietly

    probe_cuda_quietly()


@pytest.fixture(scope="session")
def manifest(pytestconfig):
    """The validated manifest of the release under test (loaded once per session)."""
    from exporters.session import session_release

    return session_release(pytestconfig).require()


@pytest.fixture(scope="session")
def release_dir(manifest) -> Path:
    """The release folder under test: --release, or the cached built-in release."""
    return manifest.root
