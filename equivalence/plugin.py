"""pytest plugin of the equivalence gate (loaded by ``mge_harness.pytest_plugin``).

``pytest equivalence/ --release DIR`` checks every variant of a release folder; without
``--release`` it gates the built-in release of ``--model`` (default resnet18). Options:

* ``--tolerances FILE``: a ``.json``/``.toml`` file overriding the default tolerances.
* ``--gate-json PATH``: where the gate's verdicts go. Defaults to ``results/gate.json``.
* ``--counterexamples DIR``: where failing inputs are saved. Defaults to ``results/counterexamples``.
* ``--probe-timeout SECONDS`` (``mge_harness.pytest_plugin``, shared with the benchmarks): how
  long a variant's crash-isolation probe may take. Defaults to 120.

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
from pathlib import Path

import pytest

from mge_harness.equivalence.record import (
    CheckRecorder,
    check_record,
    counterexample_path,
    failure_text,
    passing_message,
    rerun_command,
    save_counterexample,
)
from mge_harness.exporters.errors import HarnessError, first_line

STATE = pytest.StashKey["GateState"]()


def pytest_addoption(parser):
    group = parser.getgroup("equivalence", "release equivalence gate (equivalence/)")
    group.addoption(
        "--tolerances",
        metavar="FILE",
        help="JSON or TOML file overriding the default tolerances per check and per variant "
        "(see equivalence/README.md)",
    )
    group.addoption(
        "--eager",
        metavar="PKG.MODULE:FACTORY",
        help="rebuild the eager module of a release whose manifest has no 'source' (a "
        "hand-written one) from this factory, for the Lite-against-eager check",
    )
    group.addoption(
        "--weights",
        metavar="FILE",
        help="with --eager: the state dict (.npz or megengine.save pickle) the release was "
        "exported with",
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
    from mge_harness.equivalence.report import GateReport
    from mge_harness.equivalence.tolerances import load_tolerances

    config.addinivalue_line(
        "markers", "gate_check(name): a gate check, parametrized over the release's variants"
    )
    from mge_harness.exporters.probe import check_timeout

    try:
        tolerances = load_tolerances(config.getoption("tolerances"))
        check_timeout(config.getoption("probe_timeout"))
    except HarnessError as err:
        raise pytest.UsageError(str(err)) from None
    config.stash[STATE] = GateState(config, tolerances)
    config.pluginmanager.register(GateReport(config, config.stash[STATE]), "equivalence-gate")


class GateState:
    """One process's gate: the session's release, its runners, and the checks running on it."""

    def __init__(self, config, tolerances):
        self.config = config
        self.tolerances = tolerances
        self.blocked = None  # {variant id: ProbeResult} of variants that crashed or hung
        self.probe_errors = None  # {variant id: ProbeResult} of variants that failed in probes
        self._gate = None
        self._strategies: dict[str, object] = {}
        self.recorders: dict[tuple[str, str], CheckRecorder] = {}

    @property
    def error(self) -> str | None:
        from mge_harness.exporters.session import session_release

        return session_release(self.config).error

    @property
    def manifest(self):
        from mge_harness.exporters.session import session_release

        return session_release(self.config).manifest

    def load(self):
        """The manifest under test (``exporters.session``); None when the release is bad."""
        return self.manifest

    @property
    def gate(self):
        if self._gate is None:
            from mge_harness.equivalence.gate import Gate

            self._gate = Gate(self.manifest, self.tolerances)
        return self._gate

    def images(self, check: str, variant_id: str):
        """The image-batch strategy of ``check`` for a variant: any size, with this release's
        input size among them, or only the size the variant's ``input.shape`` fixes."""
        fixed = self.manifest.variant(variant_id).fixed_size
        key = (check, fixed)
        if key not in self._strategies:
            from mge_harness.equivalence.checks import GATE_CHECKS
            from mge_harness.equivalence.strategies import image_batches

            self._strategies[key] = image_batches(
                min_batch=GATE_CHECKS[check].min_batch,
                target=self.manifest.preprocess.size,
                fixed=fixed,
            )
        return self._strategies[key]

    def counterexample_path(self, check: str, variant: str) -> Path:
        folder = self.config.invocation_params.dir / self.config.getoption("counterexamples")
        return counterexample_path(folder, check, variant)

    def check(self, check: str, variant_id: str, data) -> None:
        """Draws one batch of images, runs ``check`` on it and asserts that it passes."""
        images = data.draw(self.images(check, variant_id), label="images")
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
        from mge_harness.equivalence.checks import GATE_CHECKS

        fixed = self.manifest.variant(variant_id).fixed_size
        batches = [at_size(batch, fixed) for batch in GATE_CHECKS[check].fixed()]
        runs = [(batch, self.gate.run(check, variant_id, batch.images)) for batch in batches]
        recorder = self.recorders.setdefault((check, variant_id), CheckRecorder())
        for batch, result in sorted(runs, key=lambda run: not run[1]):
            recorder.start(batch.images)
            recorder.finish(result)
        failed = [batch.label for batch, result in runs if not result]
        if failed:
            where = f"{len(failed)} of {len(runs)} batches: {'; '.join(failed)}; the last one"
            raise self.failure(check, variant_id, where, recorder.last_result)

    def failure(self, check: str, variant_id: str, where: str, result) -> AssertionError:
        """The assertion a failing check raises (text: ``equivalence.record.failure_text``)."""
        self.recorders.setdefault((check, variant_id), CheckRecorder()).where = where
        return AssertionError(self.failure_text(check, variant_id, where, result))

    def failure_text(self, check: str, variant_id: str, where: str, result, notes=()) -> str:
        return failure_text(
            check,
            variant_id,
            where,
            result,
            self.counterexample_path(check, variant_id),
            self.pytest_command(check, variant_id),
            notes,
        )

    def explain(self, check: str, variant_id: str, recorder: CheckRecorder | None):
        """``(diagnosis, evidence, notes)`` of a failure against the reference pipeline: the
        closest explanation (``equivalence.diagnose``) as a dict, the evidence image's path
        (``equivalence.evidence``) and their lines for the failure text; ``(None, None, [])``
        for other checks and failures that are not a comparison. Runs once per failing check,
        on its final (shrunk) example, never on a passing one.

        MegEngine, OpenCV or file errors while explaining become a line: an aid must not turn
        the check's verdict into an internal error.
        """
        from mge_harness.equivalence.checks import GATE_CHECKS

        failed_comparison = recorder is not None and recorder.where is not None
        if GATE_CHECKS[check].needs != "reference" or not failed_comparison:
            return None, None, []
        if recorder.last_images is None or recorder.last_result is None:
            return None, None, []
        from mge_harness.equivalence.diagnose import diagnose
        from mge_harness.equivalence.evidence import evidence_path, save_evidence

        try:
            diagnosis = diagnose(self.gate, variant_id, recorder.last_images)
        except (HarnessError, RuntimeError, OSError) as err:
            return None, None, [f"closest explanation: not computed ({first_line(err)})"]
        notes = [diagnosis.line()]
        path = evidence_path(self.counterexample_path(check, variant_id))
        try:
            evidence = str(save_evidence(self.gate, variant_id, diagnosis, path))
            notes.append(f"evidence: {evidence}")
        except (HarnessError, RuntimeError, OSError) as err:
            evidence = None
            notes.append(f"evidence: not saved ({first_line(err)})")
        return diagnosis.to_dict(), evidence, notes

    def pytest_command(self, check: str, variant_id: str) -> str:
        config = self.config
        return rerun_command(
            self.manifest.root,
            check,
            variant_id,
            seed=config.getoption("hypothesis_seed", None),
            profile=_profile_name(),
            tolerances=config.getoption("tolerances"),
            eager=self.eager_option(),
        )

    def eager_option(self) -> tuple[str, str | None] | None:
        """``(--eager, --weights)`` of this run, or None."""
        source = self.manifest.source
        if source is None or source.origin != "--eager":
            return None
        return source.factory, None if source.weights is None else str(source.weights)

    def finish(self, check: str, variant_id: str, excinfo) -> dict:
        """The record of a finished check; saves its counterexample when it failed."""
        recorder = self.recorders.pop((check, variant_id), None)
        failed = excinfo is not None and not excinfo.errisinstance(pytest.skip.Exception)
        if not failed:
            return check_record(recorder, False, None, passing_message(recorder))
        message = str(excinfo.value).split("\nFalsifying example")[0].strip()
        diagnosis, evidence, notes = self.explain(check, variant_id, recorder)
        if notes and isinstance(excinfo.value, AssertionError):
            message = self.failure_text(
                check, variant_id, recorder.where, recorder.last_result, notes
            )
            excinfo.value.args = (message,)  # the report, made after this, shows the notes
        path = None
        if recorder and recorder.last_images is not None:
            meta = {
                "variant": variant_id,
                "check": check,
                "result": None if recorder.last_result is None else recorder.last_result.to_dict(),
                "hypothesis_seed": self.config.getoption("hypothesis_seed", None),
                "hypothesis_profile": _profile_name(),
                "tolerances": self.config.getoption("tolerances"),
                "eager": self.eager_option(),
            }
            npy = self.counterexample_path(check, variant_id)
            path = str(save_counterexample(npy, self.manifest.root, recorder.last_images, meta))
        return check_record(recorder, True, path, message, diagnosis, evidence)

    def validate(self) -> None:
        """Probes, loads and test-runs the release; a bad one becomes a one-line UsageError."""
        from mge_harness.exporters.session import session_release

        session_release(self.config).require()
        try:
            self.gate.validate(skip=self.probe())
            self.refuse_probe_errors()
        except HarnessError as err:
            raise pytest.UsageError(str(err)) from None

    def probe(self) -> dict:
        """The variants that crashed or hung in a child process, probed once per session."""
        if self.blocked is None:
            from mge_harness.equivalence.isolation import BLOCKING, session_probes

            timeout = self.config.getoption("probe_timeout")
            results = session_probes(self.config, self.manifest, timeout)
            self.blocked = {v: r for v, r in results.items() if r.status in BLOCKING}
            self.probe_errors = {v: r for v, r in results.items() if r.status not in BLOCKING}
        return self.blocked

    def refuse_probe_errors(self) -> None:
        """A variant that failed in its probe (a batch of 1 and 4 frames at the size its input
        takes) but passed the in-process validation (one image at the model's size): it fails at
        a size its manifest says it takes. One line, before any check."""
        from mge_harness.equivalence.isolation import probe_frames

        for variant_id, result in (self.probe_errors or {}).items():
            entry = self.manifest.variant(variant_id)
            shape = list(entry.input.shape)
            raise HarnessError(
                f"{entry.path} (variant {variant_id}): fails on {probe_frames(entry)}, which "
                f"manifest.json's input.shape {shape} says it takes ({result.reason}); declare "
                "the size it takes in input.shape, e.g. [null, 224, 224, 3]"
            )

    def blocked_check(self, check: str, variant_id: str) -> tuple[str, str] | None:
        """(verdict, reason) when a variant the check needs crashed or hung in its probe."""
        from mge_harness.equivalence.isolation import blocked_check

        if not self.blocked:
            return None
        entry = self.manifest.variant(variant_id)
        return blocked_check(check, self.manifest, entry, self.blocked)

    def close(self) -> None:
        if self._gate is not None:
            self._gate.close()


def at_size(batch, fixed: tuple[int, int] | None):
    """A photo batch scaled (area averaging) to the only size a fixed-size variant takes."""
    if fixed is None or batch.images.shape[1:3] == tuple(fixed):
        return batch
    from dataclasses import replace

    import cv2
    import numpy as np

    height, width = fixed
    images = np.stack(
        [cv2.resize(im, (width, height), interpolation=cv2.INTER_AREA) for im in batch.images]
    )
    return replace(batch, images=images)


def _profile_name() -> str:
    from hypothesis import settings

    return settings.get_current_profile_name()


def _steer(result) -> None:
    """Points Hypothesis's targeted search at inputs where the outputs disagree most."""
    from hypothesis import target

    if math.isfinite(result.error_ratio):
        target(min(result.error_ratio, 1e9), label="error / tolerance")
    if math.isfinite(result.cosine):
        target(1.0 - result.cosine, label="1 - cosine")


def _marks(check: str, manifest, entry) -> list:
    from mge_harness.equivalence.checks import GATE_CHECKS

    record = GATE_CHECKS[check]
    reason = record.skip_reason(manifest, entry)
    if reason:
        return [pytest.mark.skip(reason=reason)]
    if not entry.expected_failure or record.expected_failure is None:
        return []
    # "strict": the check must fail; "may": the same defect can show there.
    strict = record.expected_failure == "strict"
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
    try:
        _prepare_items(config, state, gate_items)
    except pytest.UsageError as err:
        # Refused before checking anything: an earlier gate.json stays; the error goes beside.
        raise pytest.UsageError(f"{err}{report.write_error(str(err)) if running else ''}") from None
    if running:  # an earlier gate.json must not outlive a gate run that dies or stops now
        report.expect(_full_gate(state.manifest), (_item_key(item) for item in gate_items))
        report.write_status("incomplete")


def _full_gate(manifest) -> set[tuple[str, str]]:
    """Every (variant, check) a full gate run on ``manifest`` reports."""
    from mge_harness.equivalence.checks import GATE_CHECKS

    return {(entry.id, check) for entry in manifest.variants for check in GATE_CHECKS}


def _item_key(item) -> tuple[str, str]:
    return item.callspec.params["variant_id"], item.get_closest_marker("gate_check").args[0]


def _nodeid_key(nodeid: str) -> tuple[str, str] | None:
    """``(variant, check)`` of a gate test id ``.../test_gate.py::test_<check>[<variant>]``."""
    path, _, name = nodeid.partition("::")
    if not path.endswith("equivalence/test_gate.py") or "[" not in name:
        return None
    test, _, variant = name.partition("[")
    return variant.removesuffix("]"), test.removeprefix("test_")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    """xdist controller: gate.json says "incomplete" once a worker has collected gate tests;
    what the workers selected decides whether the run is partial."""
    keys = [key for key in map(_nodeid_key, ids) if key is not None]
    if not keys:
        return
    report = node.config.pluginmanager.get_plugin("equivalence-gate")
    manifest = node.config.stash[STATE].manifest
    if manifest is not None:
        report.expect(_full_gate(manifest), keys)
    report.write_status("incomplete")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """xdist controller: ship the probe results of a release it validated to the workers."""
    from mge_harness.equivalence.isolation import WORKERINPUT_KEY, to_workerinput

    state = node.config.stash[STATE]
    if state.blocked is not None:
        node.workerinput[WORKERINPUT_KEY] = to_workerinput({**state.blocked, **state.probe_errors})


def _prepare_items(config, state, gate_items) -> None:
    # Raised here, not during collection, so pytest prints one "ERROR: ..." line, no traceback.
    # A session that never asked for the release (no gate or benchmark tests, as in a project
    # that merely has the plugin installed) does not export or load one here.
    from mge_harness.exporters.session import release_requested

    if release_requested(config) and state.error:
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
        notes = json.dumps(state.gate.notes)
        for item in gate_items:  # reports carry them to an xdist controller
            item.user_properties.append(("gate_notes", notes))


def pytest_sessionstart(session):
    """On a pytest-xdist controller, which collects nothing, check an explicit ``--release``
    here: a worker's UsageError would surface as an INTERNALERROR traceback."""
    config = session.config
    if config.pluginmanager.has_plugin("dsession") and config.getoption("release"):
        state = config.stash[STATE]
        try:
            state.validate()
        except pytest.UsageError as err:
            note = config.pluginmanager.get_plugin("equivalence-gate").write_error(str(err))
            raise pytest.UsageError(f"{err}{note}") from None
        finally:
            state.close()


def pytest_runtest_setup(item):
    marker = item.get_closest_marker("gate_check")
    if marker is not None:
        from mge_harness.equivalence.checks import runtime_skip_reason

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
    record = None
    if marker is not None and call.when == "call":
        state = item.config.stash[STATE]
        record = state.finish(marker.args[0], item.callspec.params["variant_id"], call.excinfo)
        # Before the report is made: reports copy the item's user_properties.
        item.user_properties.append(("gate_record", json.dumps(record, allow_nan=False)))
    report = yield
    quiet = item.config.option.verbose <= 0
    if record is not None and report.failed and call.excinfo is not None and quiet:
        # The failure text alone: no plugin source, no Hypothesis explanation or blob (-v
        # shows them). The saved counterexample is what reproduces it.
        report.longrepr = record["message"]
    return report
