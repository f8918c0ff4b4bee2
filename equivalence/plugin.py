"""pytest plugin of the equivalence gate (loaded by the root conftest).

``pytest equivalence/ --release DIR`` checks every variant of a release folder; without
``--release`` it gates the built-in release of ``--model`` (default resnet18). Options:

* ``--tolerances FILE``: a ``.json``/``.toml`` file overriding the default tolerances.
* ``--gate-json PATH``: where the gate's verdicts go. Defaults to ``results/gate.json``.
* ``--counterexamples DIR``: where failing inputs are saved. Defaults to ``results/counterexamples``.
* ``--probe-timeout SECONDS`` (root conftest, shared with the benchmarks): how long a variant's
  crash-isolation probe may take. Defaults to 120.

A bad release (missing folder or manifest, bad JSON or keys, a ``.mge`` that does not load or
run) stops the session with one ``ERROR: ...`` line before any check runs. Every variant is
probed in a child process first (``equivalence.isolation``): one that crashes or hangs there is
never loaded in-process, its checks fail with the verdict ``crashed``/``timeout`` and the other
variants are still checked. Under pytest-xdist every worker loads its own runners; each check's
record travels in its report's ``user_properties`` and only the controller writes ``gate.json``.

``gate.json`` fails closed: once the gate's tests are collected it is replaced by a document with
``"status": "incomplete"`` and ``"passed": false`` (so a gate run that is killed or crashes
leaves no earlier pass behind), and a bad release gets ``"status": "error"`` with the message.
"""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

import pytest

from equivalence.record import CheckRecorder, check_record
from exporters.errors import HarnessError

STATE = pytest.StashKey["GateState"]()

#: Checks against another pipeline, where an expected failure may show too (non-strict xfail).
#: Not eager: it replays the variant's own preprocessing recipe, so a variant's known defect
#: cannot show there and an eager failure is an export defect, whatever the variant.
_CROSS_CHECKS = ("fuse", "device", "photos")


def pytest_addoption(parser):
    group = parser.getgroup("equivalence", "release equivalence gate (equivalence/)")
    group.addoption(
        "--tolerances",
        metavar="FILE",
        help="JSON or TOML file overriding the default tolerances per check and per variant "
        "(see equivalence/README.md)",
    )
    group.addoption(
        "--gate-json",
        metavar="PATH",
        default="results/gate.json",
        help="where to write the gate's verdicts (default: results/gate.json)",
    )
    group.addoption(
        "--counterexamples",
        metavar="DIR",
        default="results/counterexamples",
        help="where to save failing inputs (default: results/counterexamples)",
    )


def pytest_configure(config):
    from equivalence.report import GateReport
    from equivalence.tolerances import load_tolerances

    config.addinivalue_line(
        "markers", "gate_check(name): a gate check, parametrized over the release's variants"
    )
    from exporters.probe import check_timeout

    try:
        tolerances = load_tolerances(config.getoption("tolerances"))
        check_timeout(config.getoption("probe_timeout"))
    except HarnessError as err:
        raise pytest.UsageError(str(err)) from None
    config.stash[STATE] = GateState(config, tolerances)
    config.pluginmanager.register(GateReport(config, config.stash[STATE]), "equivalence-gate")


class GateState:
    """One process's gate: the release (loaded at collection), its runners, the recorders."""

    def __init__(self, config, tolerances):
        self.config = config
        self.tolerances = tolerances
        self.error: str | None = None
        self.manifest = None
        self.blocked = None  # {variant id: ProbeResult} of variants that crashed or hung
        self._gate = None
        self._strategies: dict[str, object] = {}
        self.recorders: dict[tuple[str, str], CheckRecorder] = {}

    def load(self):
        """The manifest under test, loaded once; None (and ``error`` set) when it is bad.

        Mirrors the root conftest's ``manifest`` fixture, which collection cannot use: the
        variant ids are the test ids.
        """
        if self.manifest is None and self.error is None:
            from exporters.manifest import load_manifest
            from exporters.release import resolve_release

            config = self.config
            try:
                release = resolve_release(config.getoption("release"), config.getoption("model"))
                self.manifest = load_manifest(release)
            except HarnessError as err:
                self.error = str(err)
        return self.manifest

    @property
    def gate(self):
        if self._gate is None:
            from equivalence.checks import Gate

            self._gate = Gate(self.load(), self.tolerances)
        return self._gate

    def images(self, check: str):
        """The image-batch strategy of ``check``, at this release's input size."""
        if check not in self._strategies:
            from equivalence.checks import GATE_CHECKS
            from equivalence.strategies import image_batches

            self._strategies[check] = image_batches(
                min_batch=GATE_CHECKS[check].min_batch, target=self.manifest.preprocess.size
            )
        return self._strategies[check]

    def counterexample_path(self, check: str, variant: str) -> Path:
        folder = self.config.invocation_params.dir / self.config.getoption("counterexamples")
        return folder / variant / f"{check}.npy"

    def check(self, check: str, variant_id: str, data) -> None:
        """Draws one batch of images, runs ``check`` on it and asserts that it passes."""
        images = data.draw(self.images(check), label="images")
        recorder = self.recorders.setdefault((check, variant_id), CheckRecorder())
        recorder.start(images)
        result = self.gate.run(check, variant_id, images)
        recorder.finish(result)
        _steer(result)
        if not result:
            raise self.failure(check, variant_id, f"a batch of shape {images.shape}", result)

    def check_fixed(self, check: str, variant_id: str) -> None:
        """Runs ``check`` on every batch of its fixed inputs (the photo set) and asserts that all
        pass. Failing batches are recorded last, so the counterexample is a failing batch."""
        from equivalence.checks import GATE_CHECKS

        runs = [
            (batch, self.gate.run(check, variant_id, batch.images))
            for batch in GATE_CHECKS[check].fixed()
        ]
        recorder = self.recorders.setdefault((check, variant_id), CheckRecorder())
        for batch, result in sorted(runs, key=lambda run: not run[1]):
            recorder.start(batch.images)
            recorder.finish(result)
        failed = [batch.label for batch, result in runs if not result]
        if failed:
            where = f"{len(failed)} of {len(runs)} batches: {'; '.join(failed)}; the last one"
            raise self.failure(check, variant_id, where, recorder.last_result)

    def failure(self, check: str, variant_id: str, where: str, result) -> AssertionError:
        """The assertion a failing check raises: what failed, the comparison, how to reproduce."""
        from equivalence.checks import GATE_CHECKS
        from equivalence.record import reproduce_command

        npy = self.counterexample_path(check, variant_id)
        return AssertionError(
            f"{variant_id} fails the {check} check ({GATE_CHECKS[check].description}) "
            f"on {where}:\n{result}\n"
            f"counterexample: {npy} (+ PNGs)\n"
            f"reproduce: {reproduce_command(npy)}\n"
            f"      or: {self.pytest_command(check, variant_id)}"
        )

    def pytest_command(self, check: str, variant_id: str) -> str:
        words = ["pytest", "equivalence/", "--release", str(self.manifest.root)]
        words += ["-k", f"test_{check} and {variant_id}"]
        seed = self.config.getoption("hypothesis_seed", None)
        if seed is not None:
            words += ["--hypothesis-seed", str(seed)]
        return shlex.join(words)

    def finish(self, check: str, variant_id: str, excinfo) -> dict:
        """The record of a finished check; saves its counterexample when it failed."""
        from equivalence.record import save_counterexample

        recorder = self.recorders.pop((check, variant_id), None)
        failed = excinfo is not None and not excinfo.errisinstance(pytest.skip.Exception)
        if not failed:
            worst = recorder.worst if recorder else None
            message = (
                f"{recorder.examples} examples; worst margin {worst.margin:.3g}" if worst else ""
            )
            return check_record(recorder, False, None, message)
        message = str(excinfo.value).split("\nFalsifying example")[0].strip()
        path = None
        if recorder and recorder.last_images is not None:
            meta = {
                "variant": variant_id,
                "check": check,
                "result": None if recorder.last_result is None else recorder.last_result.to_dict(),
                "hypothesis_seed": self.config.getoption("hypothesis_seed", None),
                "tolerances": self.config.getoption("tolerances"),
            }
            npy = self.counterexample_path(check, variant_id)
            path = str(save_counterexample(npy, self.manifest.root, recorder.last_images, meta))
        return check_record(recorder, True, path, message)

    def validate(self) -> None:
        """Probes, loads and test-runs the release; a bad one becomes a one-line UsageError."""
        if self.load() is None:
            raise pytest.UsageError(self.error)
        try:
            self.gate.validate(skip=self.probe())
        except HarnessError as err:
            raise pytest.UsageError(str(err)) from None

    def probe(self) -> dict:
        """The variants that crashed or hung in a child process (probed once per session; an
        xdist worker takes the controller's results when it probed)."""
        if self.blocked is None:
            from equivalence.isolation import probe_release
            from exporters.probe import ProbeResult

            shipped = getattr(self.config, "workerinput", {}).get("gate_probes")
            if shipped is not None:
                self.blocked = {vid: ProbeResult(*fields) for vid, fields in shipped.items()}
            else:
                timeout = self.config.getoption("probe_timeout")
                self.blocked = probe_release(self.manifest, timeout)
        return self.blocked

    def blocked_check(self, check: str, variant_id: str) -> tuple[str, str] | None:
        """(verdict, reason) when a variant the check needs crashed or hung in its probe."""
        from equivalence.isolation import blocked_check

        if not self.blocked:
            return None
        entry = self.manifest.variant(variant_id)
        return blocked_check(check, self.manifest, entry, self.blocked)

    def close(self) -> None:
        if self._gate is not None:
            self._gate.close()


def _steer(result) -> None:
    """Points Hypothesis's targeted search at inputs where the outputs disagree most."""
    from hypothesis import target

    if math.isfinite(result.error_ratio):
        target(min(result.error_ratio, 1e9), label="error / tolerance")
    if math.isfinite(result.cosine):
        target(1.0 - result.cosine, label="1 - cosine")


def _marks(check: str, manifest, entry) -> list:
    from equivalence.checks import skip_reason

    reason = skip_reason(check, manifest, entry)
    if reason:
        return [pytest.mark.skip(reason=reason)]
    if not entry.expected_failure or check not in ("reference", *_CROSS_CHECKS):
        return []
    # The reference check must fail (strict); the others may (the same defect can show there).
    strict = check == "reference"
    return [pytest.mark.xfail(reason=entry.expected_failure, strict=strict, raises=AssertionError)]


def pytest_generate_tests(metafunc):
    marker = metafunc.definition.get_closest_marker("gate_check")
    if marker is None:
        return
    check = marker.args[0]
    manifest = metafunc.config.stash[STATE].load()
    entries = manifest.variants if manifest else ()
    params = [pytest.param(e.id, id=e.id, marks=_marks(check, manifest, e)) for e in entries]
    metafunc.parametrize("variant_id", params)


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: only gate tests that will run count
def pytest_collection_modifyitems(config, items):
    state = config.stash[STATE]
    gate_items = [item for item in items if item.get_closest_marker("gate_check")]
    running = bool(gate_items) and not config.option.collectonly
    report = config.pluginmanager.get_plugin("equivalence-gate")
    if running:  # an earlier gate.json must not outlive a gate run that dies or stops here
        report.write_status("incomplete")
    try:
        _prepare_items(config, state, gate_items)
    except pytest.UsageError as err:
        if running:
            report.write_status("error", str(err))
        raise


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    """xdist controller: gate.json says "incomplete" once a worker has collected gate tests."""
    if any(nodeid.split("::")[0].endswith("equivalence/test_gate.py") for nodeid in ids):
        node.config.pluginmanager.get_plugin("equivalence-gate").write_status("incomplete")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """xdist controller: ship the probe results of a release it validated to the workers."""
    blocked = node.config.stash[STATE].blocked
    if blocked is not None:
        node.workerinput["gate_probes"] = {
            vid: [r.status, r.reason, r.seconds] for vid, r in blocked.items()
        }


def _prepare_items(config, state, gate_items) -> None:
    # Raised here, not during collection, so pytest prints one "ERROR: ..." line, no traceback.
    if state.error:
        raise pytest.UsageError(state.error)
    if not gate_items:
        return
    order = {e.id: i for i, e in enumerate(state.manifest.variants)}
    for item in gate_items:
        variant = item.callspec.params["variant_id"]
        xfail = item.get_closest_marker("xfail")
        item.user_properties += [
            ("gate_check", item.get_closest_marker("gate_check").args[0]),
            ("gate_variant", variant),
            ("gate_variant_index", order[variant]),
            ("gate_expected_failure", state.manifest.variant(variant).expected_failure),
            ("gate_strict_xfail", bool(xfail and xfail.kwargs.get("strict"))),
        ]
    if not config.option.collectonly:
        state.validate()


def pytest_sessionstart(session):
    """On a pytest-xdist controller, which collects nothing, check an explicit ``--release``
    here: a worker's UsageError would surface as an INTERNALERROR traceback."""
    config = session.config
    if config.pluginmanager.has_plugin("dsession") and config.getoption("release"):
        state = config.stash[STATE]
        state.validate()
        state.close()


def pytest_runtest_setup(item):
    marker = item.get_closest_marker("gate_check")
    if marker is not None:
        from equivalence.checks import runtime_skip_reason

        reason = runtime_skip_reason(marker.args[0])
        if reason:
            pytest.skip(reason)
        blocked = item.config.stash[STATE].blocked_check(
            marker.args[0], item.callspec.params["variant_id"]
        )
        if blocked:
            item.user_properties.append(("gate_blocked", blocked[0]))
            pytest.fail(blocked[1], pytrace=False)


@pytest.fixture(scope="session")
def gate(pytestconfig):
    """The session's ``GateState``: ``gate.check(name, variant_id, data)`` runs one example."""
    state = pytestconfig.stash[STATE]
    yield state
    state.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    marker = item.get_closest_marker("gate_check")
    if marker is not None and call.when == "call":
        state = item.config.stash[STATE]
        record = state.finish(marker.args[0], item.callspec.params["variant_id"], call.excinfo)
        # Before the report is made: reports copy the item's user_properties.
        item.user_properties.append(("gate_record", json.dumps(record, allow_nan=False)))
    return (yield)
