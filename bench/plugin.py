"""pytest plugin of the Lite latency benchmarks (loaded by ``mge_harness.pytest_plugin``).

Options (``pytest bench/ --benchmark-autosave ...``):

* ``--full-grid`` (or ``MGE_BENCH_GRID=full``): the release grid instead of the quick CI grid.
* ``--batch-sizes 1,2,4,8`` and ``--devices cpu,cpu-2t``: override the grid's axes.
* ``--tuned FILE``: also benchmark every variant ``FILE`` (a ``tuned.json`` from
  ``python -m bench.tune``) names on its recommended config, as device ``tuned``
  (see ``bench.cases``).
* ``--probe-timeout SECONDS`` (``mge_harness.pytest_plugin``, shared with the gate): how long
  a variant's crash-isolation probe may take. Defaults to 120.

With ``--benchmark-save``/``--benchmark-autosave`` raw timings are always saved (as if
``--benchmark-save-data`` were given), and cases that could not be measured go to a
``bench-<datetime>.not-measured.json`` sidecar in the same machine folder as the saved run.
"""

from __future__ import annotations

import os

import pytest

from mge_harness.bench.grid import GRID_ENV, select_grid
from mge_harness.bench.state import BenchState, sidecar_document, write_not_measured
from mge_harness.exporters.errors import HarnessError

STATE = pytest.StashKey[BenchState]()
CASES = pytest.StashKey[list]()
COLLECTION_ERROR = pytest.StashKey[str]()


def pytest_addoption(parser):
    group = parser.getgroup("mge-bench", "MegEngine Lite latency benchmarks (bench/)")
    group.addoption(
        "--full-grid",
        action="store_true",
        help=f"run the full grid (batches 1,2,4,8 x every device config) instead of the quick "
        f"one (batches 1,4 x cpu); {GRID_ENV}=full does the same",
    )
    group.addoption(
        "--batch-sizes",
        metavar="LIST",
        help="comma-separated batch sizes, e.g. 1,2,4,8 (default: the grid's)",
    )
    group.addoption(
        "--devices",
        metavar="LIST",
        help="comma-separated device config names from exporters/devices.py, e.g. cpu,cpu-2t "
        "(default: the grid's)",
    )
    group.addoption(
        "--tuned",
        metavar="FILE",
        help="tuned.json from python -m bench.tune: also benchmark each variant it names on its "
        "recommended config, as device 'tuned'",
    )


def pytest_configure(config):
    from mge_harness.exporters.probe import check_timeout

    try:
        grid = select_grid(
            full_flag=config.getoption("full_grid"),
            env_value=os.environ.get(GRID_ENV),
            batch_sizes=config.getoption("batch_sizes"),
            devices=config.getoption("devices"),
        )
        timeout = check_timeout(config.getoption("probe_timeout"))
    except HarnessError as err:
        raise pytest.UsageError(str(err)) from None
    config.stash[STATE] = BenchState(grid, probe_timeout=timeout)
    if config.getoption("benchmark_save", None) or config.getoption("benchmark_autosave", False):
        config.option.benchmark_save_data = True


def _collection_cases(config) -> list:
    """The benchmark cases of the release under test, built once per session (the session's
    release, ``exporters.session``, is shared with the gate and the fixtures)."""
    if CASES not in config.stash:
        from mge_harness.bench.cases import build_cases
        from mge_harness.exporters.session import session_release

        release = session_release(config)
        if release.manifest is None:
            config.stash[COLLECTION_ERROR] = release.error
            config.stash[CASES] = []
        else:
            variants = release.manifest.variants
            try:
                tuned = _tuned_configs(config.getoption("tuned"), variants)
            except HarnessError as err:
                config.stash[COLLECTION_ERROR] = f"--tuned: {err}"
                tuned = {}
            config.stash[CASES] = build_cases(variants, config.stash[STATE].grid, tuned)
    return config.stash[CASES]


def _tuned_configs(path, variants) -> dict[str, str]:
    """Variant id -> recommended config name for the variants ``path`` names (none without it).

    A recommended config this checkout does not know is a one-line error."""
    if not path:
        return {}
    from mge_harness.exporters.devices import get_device_config
    from mge_harness.exporters.tuned import load_tuned, recommended_config

    named = load_tuned(path)["variants"]
    tuned = {v.id: recommended_config(path, v.id) for v in variants if v.id in named}
    if not tuned:
        raise HarnessError(f"{path}: names none of this release's variants")
    for name in tuned.values():
        get_device_config(name)
    return tuned


def pytest_generate_tests(metafunc):
    if "bench_case" in metafunc.fixturenames:
        cases = _collection_cases(metafunc.config)
        metafunc.parametrize("bench_case", cases, ids=[case.id for case in cases])


def pytest_collection_modifyitems(config, items):
    # Raised here, not during collection, so pytest prints one "ERROR: ..." line, no traceback.
    if COLLECTION_ERROR in config.stash:
        raise pytest.UsageError(config.stash[COLLECTION_ERROR])
    if CASES in config.stash and not config.pluginmanager.has_plugin("benchmark"):
        raise pytest.UsageError(
            "the benchmarks need pytest-benchmark: pip install 'mge-release-harness[bench]'"
        )


@pytest.fixture(scope="session")
def bench_state(pytestconfig):
    """The session's ``BenchState``; loaded networks are released at the end of the session."""
    state = pytestconfig.stash[STATE]
    yield state
    state.runners.close()


@pytest.hookimpl(optionalhook=True)  # pytest-benchmark's: the [bench] extra
def pytest_benchmark_update_machine_info(config, machine_info):
    from mge_harness.bench.machine import machine_info as megengine_info

    machine_info.update(megengine_info())


@pytest.hookimpl(optionalhook=True)  # pytest-benchmark's: the [bench] extra
def pytest_benchmark_update_json(config, benchmarks, output_json):
    config.stash[STATE].saved_run = {
        "datetime": output_json.get("datetime"),
        "machine_info": output_json.get("machine_info"),
    }


def pytest_sessionfinish(session):
    config = session.config
    state = config.stash.get(STATE, None)
    saving = config.getoption("benchmark_save", None) or config.getoption(
        "benchmark_autosave", False
    )
    if not state or not state.not_measured or not saving:
        return
    from pytest_benchmark.storage.file import FileStorage

    bench_session = config._benchmarksession
    if not isinstance(bench_session.storage, FileStorage):
        return
    machine = None if state.saved_run else bench_session.get_machine_info()
    document = sidecar_document(state.not_measured, state.saved_run, machine)
    folder = bench_session.storage.path / bench_session.machine_id
    path = write_not_measured(folder, document)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter:
        reporter.write_line(f"Saved {len(state.not_measured)} not-measured case(s) in: {path}")
