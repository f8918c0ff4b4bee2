"""The harness's pytest plugin: the release under test, Hypothesis profiles, the suite plugins.

Installed, it arrives by the ``pytest11`` entry point ``mge_harness.pytest_plugin`` (so
``pytest --pyargs equivalence --release DIR`` works from any folder); in a source checkout that is
not installed, the root ``conftest.py`` loads it by the same name, so it never registers twice.
It loads ``equivalence.plugin`` (the gate) and ``bench.plugin`` (the benchmarks).

``--release DIR`` names the release folder that ``equivalence/`` gates and ``bench/`` times;
without it both use the built-in release of ``--model`` (default resnet18), exported on demand and
cached. Hypothesis profiles ``dev`` (the default unless a profile was loaded before this plugin),
``ci`` and ``release`` are picked with Hypothesis's own ``--hypothesis-profile``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings

from mge_harness.exporters.probe import DEFAULT_TIMEOUT_S

pytest_plugins = ["mge_harness.equivalence.plugin", "mge_harness.bench.plugin"]

#: Warnings MegEngine's import raises under the pinned numpy and setuptools.
WARNING_FILTERS = (
    "ignore:unclosed file:ResourceWarning",
    # numpy 1.26 warns on import under MegEngine: "The value of the smallest subnormal ..."
    "ignore:The value of the smallest subnormal:UserWarning",
    "ignore:pkg_resources is deprecated:UserWarning",
)

_SLOW_DATA = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]

#: Every phase but ``explain``: after shrinking, Hypothesis's explain phase re-runs a failing check
#: many times to mark which parts of the drawn example could vary, text the gate never shows (its
#: counterexample, diagnosis and reproduce command come from the shrunk batch). Measured on a
#: user's 32x32 model whose eager check fails: 60 % of the failing gate's time was explain; the
#: same batch is saved and the same verdict given without it.
_PHASES = [p for p in Phase if p is not Phase.explain]

# Each profile starts from Hypothesis's "default" profile, not from whichever is loaded now: under
# a CI runner that is Hypothesis's "ci" one, whose database=None "dev" would otherwise inherit.
_BASE = settings.get_profile("default")
settings.register_profile(
    "dev",
    _BASE,
    max_examples=10,
    deadline=None,
    phases=_PHASES,
    suppress_health_check=_SLOW_DATA,
)
settings.register_profile(
    "ci",
    _BASE,
    max_examples=20,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    phases=_PHASES,
    suppress_health_check=_SLOW_DATA,
)
settings.register_profile(
    "release",
    _BASE,
    max_examples=500,
    deadline=None,
    print_blob=True,
    phases=_PHASES,
    suppress_health_check=_SLOW_DATA,
)
if settings.get_current_profile_name() == "default":  # a profile loaded earlier wins
    settings.load_profile("dev")
elif settings.get_current_profile_name() == "ci":
    # Hypothesis loads its own "ci" profile (100 examples) under a CI runner (CI=true and the
    # like); the harness's "ci", registered above under the same name, is the one meant.
    settings.load_profile("ci")


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
    """Adds the warning filters. (MegEngine's CUDA probe chatter is silenced when the session
    first asks for its release, ``exporters.session``: a session that runs none of the
    harness's tests does not import MegEngine.)"""
    for line in WARNING_FILTERS:
        config.addinivalue_line("filterwarnings", line)


def pytest_runtest_setup(item):
    """MegEngine's event poller, once a test's eager tensor started it, runs on idle cores only
    (``exporters.poller``): one look in ``/proc`` per test until it is found, then none."""
    from mge_harness.exporters.poller import idle_megengine_poller

    idle_megengine_poller()


@pytest.fixture(scope="session")
def manifest(pytestconfig):
    """The validated manifest of the release under test (loaded once per session)."""
    from mge_harness.exporters.session import session_release

    return session_release(pytestconfig).require()


@pytest.fixture(scope="session")
def release_dir(manifest) -> Path:
    """The release folder under test: --release, or the cached built-in release."""
    return manifest.root
