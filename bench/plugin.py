"""pytest plugin of the Lite latency benchmarks (loaded by ``mge_harness.pytest_plugin``).

Options (``pytest bench/ --benchmark-autosave ...``):

* ``--full-grid`` (or ``MGE_BENCH_GRID=full``): the release grid instead of the quick CI grid.
* ``--batch-sizes 1,2,4,8``, ``--devices cpu,cpu-2t`` and ``--frame-sizes 480x640,1080x1920``
  (the e2e frames): override the grid's axes.
* ``--tuned FILE``: also benchmark every variant ``FILE`` (a ``tuned.json`` from
  ``python -m bench.tune``) names on its recommended config, as device ``tuned``
  (see ``bench.cases``).
* Paired sessions (``bench/test_paired.py``, ``bench.paired``) time two things with their
  rounds interleaved and run instead of the latency grid: ``--baseline-release DIR`` (each
  variant id both releases have, DIR's against the release under test's, on the grid's
  devices), ``--pair-devices A,B`` (every variant, config A against B) or ``--pair-variants
  A,B`` (variant A against B on the grid's devices); one of them per session.
* ``--probe-timeout SECONDS`` (``mge_harness.pytest_plugin``, shared with the gate): how long
  a variant's crash-isolation probe may take. Defaults to 120.

Every session that times benchmarks also times the machine-speed canary (``bench.canary``)
before its first benchmark and after each one, and saves it as ``machine_info["canary"]``; run
against run compares (``python -m reports --compare``) normalise by it.

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
PAIRED_CASES = pytest.StashKey[list]()
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
        "--frame-sizes",
        metavar="LIST",
        help="comma-separated HEIGHTxWIDTH sizes of the e2e frames, e.g. 480x640,1080x1920 "
        "(default: the grid's; quick 480x640, full both)",
    )
    group.addoption(
        "--tuned",
        metavar="FILE",
        help="tuned.json from python -m bench.tune: also benchmark each variant it names on its "
        "recommended config, as device 'tuned'",
    )
    group.addoption(
        "--baseline-release",
        metavar="DIR",
        help="paired session: time each variant of release DIR against the same variant id of "
        "the release under test, rounds interleaved, on the grid's devices and batches",
    )
    group.addoption(
        "--pair-devices",
        metavar="A,B",
        help="paired session: time every variant on device config B against A, rounds interleaved",
    )
    group.addoption(
        "--pair-variants",
        metavar="A,B",
        help="paired session: time variant B against variant A, rounds interleaved, on the "
        "grid's devices and batches",
    )


def pytest_configure(config):
    from mge_harness.exporters.probe import check_timeout

    try:
        grid = select_grid(
            full_flag=config.getoption("full_grid"),
            env_value=os.environ.get(GRID_ENV),
            batch_sizes=config.getoption("batch_sizes"),
            devices=config.getoption("devices"),
            frame_sizes=config.getoption("frame_sizes"),
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


def _paired_request(config) -> tuple[str, str] | None:
    """(kind, value) of the one paired option given, None for none; two is a usage error."""
    given = [
        (kind, config.getoption(option))
        for kind, option in (
            ("release", "baseline_release"),
            ("device", "pair_devices"),
            ("variant", "pair_variants"),
        )
        if config.getoption(option)
    ]
    if len(given) > 1:
        raise pytest.UsageError(
            "--baseline-release, --pair-devices and --pair-variants: expected one of them, got "
            + " and ".join(kind for kind, _ in given)
        )
    return given[0] if given else None


def _two(text: str, option: str) -> tuple[str, str]:
    names = tuple(item.strip() for item in text.split(","))
    if len(names) != 2 or not all(names) or names[0] == names[1]:
        raise HarnessError(f"{option} {text!r}: expected two different names A,B (A the baseline)")
    return names


def _paired_cases(config) -> list:
    """The paired cases of this session (none without a paired option), built once."""
    if PAIRED_CASES not in config.stash:
        request = _paired_request(config)
        manifest = _collection_manifest(config) if request else None
        cases = []
        if request and manifest is not None:
            try:
                cases = _build_paired(config, manifest, *request)
            except HarnessError as err:
                config.stash[COLLECTION_ERROR] = str(err)
        config.stash[PAIRED_CASES] = cases
    return config.stash[PAIRED_CASES]


def _build_paired(config, manifest, kind: str, value: str) -> list:
    from mge_harness.bench.grid import parse_devices
    from mge_harness.bench.paired import build_paired_cases

    grid = config.stash[STATE].grid
    if kind == "release":
        from mge_harness.exporters.manifest import load_manifest

        try:
            baseline = load_manifest(value)
        except HarnessError as err:
            raise HarnessError(f"--baseline-release: {err}") from None
        cases = build_paired_cases(kind, manifest, grid, baseline_manifest=baseline)
        if not cases:
            raise HarnessError(
                f"--baseline-release {value}: has none of the variant ids of {manifest.root}"
            )
        return cases
    if kind == "device":
        pair = _two(value, "--pair-devices")
        try:
            parse_devices(value)
        except HarnessError as err:
            raise HarnessError(str(err).replace("--devices", "--pair-devices", 1)) from None
        return build_paired_cases(kind, manifest, grid, pair=pair)
    pair = _two(value, "--pair-variants")
    for name in pair:
        try:
            manifest.variant(name)
        except HarnessError as err:
            raise HarnessError(f"--pair-variants: {err}") from None
    return build_paired_cases(kind, manifest, grid, pair=pair)


def _collection_manifest(config):
    """The release under test's manifest, or None with the error stashed."""
    from mge_harness.exporters.session import session_release

    release = session_release(config)
    if release.manifest is None:
        config.stash[COLLECTION_ERROR] = release.error
    return release.manifest


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
    if "paired_case" in metafunc.fixturenames:
        cases = _paired_cases(metafunc.config)
        metafunc.parametrize("paired_case", cases, ids=[case.id for case in cases])


def pytest_collection_modifyitems(config, items):
    # Raised here, not during collection, so pytest prints one "ERROR: ..." line, no traceback.
    if COLLECTION_ERROR in config.stash:
        raise pytest.UsageError(config.stash[COLLECTION_ERROR])
    paired = _paired_request(config) is not None
    unwanted = "bench_case" if paired else "paired_case"
    dropped = [item for item in items if unwanted in getattr(item, "fixturenames", ())]
    if dropped:  # a paired session runs the pairs only; any other session none of them
        items[:] = [item for item in items if item not in dropped]
        config.hook.pytest_deselected(items=dropped)
    has_cases = CASES in config.stash or PAIRED_CASES in config.stash
    if has_cases and not config.pluginmanager.has_plugin("benchmark"):
        raise pytest.UsageError(
            "the benchmarks need pytest-benchmark: pip install 'mge-release-harness[bench]'"
        )


@pytest.fixture(scope="session")
def bench_state(pytestconfig):
    """The session's ``BenchState``; loaded networks are released at the end of the session."""
    state = pytestconfig.stash[STATE]
    yield state
    state.close()


def _times_benchmarks(item) -> bool:
    """Whether ``item`` is one of this plugin's benchmarks and timing is on."""
    names = getattr(item, "fixturenames", ())
    ours = "bench_case" in names or "paired_case" in names
    return ours and not item.config.getoption("benchmark_disable", False)


def pytest_runtest_setup(item):
    state = item.config.stash.get(STATE, None)
    if state and not state.canary.samples and _times_benchmarks(item):
        from mge_harness.bench.canary import START_ROUNDS

        state.canary.sample(START_ROUNDS)


def pytest_runtest_teardown(item, nextitem):
    state = item.config.stash.get(STATE, None)
    if state and _times_benchmarks(item):
        from mge_harness.bench.canary import ROUNDS_PER_TEST

        state.canary.sample(ROUNDS_PER_TEST, after=item.nodeid)


@pytest.hookimpl(optionalhook=True)  # pytest-benchmark's: the [bench] extra
def pytest_benchmark_update_machine_info(config, machine_info):
    from mge_harness.bench.machine import machine_info as megengine_info

    machine_info.update(megengine_info())
    state = config.stash.get(STATE, None)
    if state:
        machine_info["canary"] = state.canary.record()


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
