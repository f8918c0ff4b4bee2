"""Runners: one shape for everything that turns inputs into outputs.

``activate() / infer(feed) -> {name: array} / deactivate()``, usable as a context manager
(Polygraphy's runner shape). MegEngine Lite, the host OpenCV pipeline in front of Lite, and the
eager MegEngine module are all runners, so equivalence compares runner against runner and
benchmarks time ``runner.run()`` or ``runner.infer()``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from mge_harness.exporters.devices import DeviceConfig, get_device_config, unavailable_reason
from mge_harness.exporters.errors import HarnessError, first_line
from mge_harness.exporters.files import check_regular
from mge_harness.exporters.manifest import InputSpec, Manifest, VariantEntry
from mge_harness.exporters.preprocess import HostPipeline, PreprocessSpec, check_images
from mge_harness.exporters.quiet import captured_stderr


class _DropLiteErrorLog(logging.Filter):
    """megenginelite logs every C error through the root logger (with a C++ backtrace) and then
    raises it; the runner turns the exception into one line, so the log copy is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.pathname.replace("\\", "/").endswith("megenginelite/base.py")


logging.getLogger().addFilter(_DropLiteErrorLog())


def _quiet_lite(lite) -> None:
    # Lite prints "LITE[ERR] ..." to stderr itself before raising; errors reach the user as
    # one-line HarnessErrors instead. ERROR is the quietest level Lite accepts.
    lite.set_log_level(lite.LiteLogLevel.ERROR)


class Runner:
    """Base runner: a context manager around ``activate``/``deactivate``."""

    name = "runner"

    def __init__(self):
        self.is_active = False

    def activate(self) -> None:
        if not self.is_active:
            self._activate()
            self.is_active = True

    def deactivate(self) -> None:
        if self.is_active:
            self._deactivate()
            self.is_active = False

    def _activate(self) -> None:
        pass

    def _deactivate(self) -> None:
        pass

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def __enter__(self):
        self.activate()
        return self

    def __exit__(self, *exc):
        self.deactivate()

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r})"


def load_network(network, path: Path) -> None:
    """``network.load`` of the ``.mge`` at ``path``, from an open file: given a path, Lite opens
    it with megfile (``megfile.smart_open``), whose import (boto3, paramiko: 0.1-0.2 s) the
    harness otherwise never needs (``exporters.deferred``); a file object is read the same way
    (``LiteNetwork.load`` reads its bytes either way)."""
    with open(path, "rb") as file:
        network.load(file)


def _check_model_file(path: Path) -> None:
    check_regular(path, "a MegEngine .mge dump")
    if not path.is_file():
        raise HarnessError(f"{path}: model file does not exist")
    size = path.stat().st_size
    if size == 0:
        raise HarnessError(f"{path}: model file is empty; expected a MegEngine .mge dump")
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"mgbtest0"):
        raise HarnessError(
            f"{path}: the dump embeds test inputs (input_data=...); MegEngine Lite cannot load "
            "it, dump again without input_data"
        )


def set_input(tensor, array: np.ndarray, share: bool = True) -> None:
    """Hands a C-contiguous ``array`` to a Lite input ``tensor``: zero-copy when ``share`` (CPU
    networks) and its dtype is the input's, else a copy (whose dtype mismatch Lite reports at
    forward, in words).

    Sharing saves the copy-in of every call (a 1080x1920 uint8 frame: 1.9 ms on one core, the
    largest host-side stage of a fused graph; ``bench.stages``). The layout is passed explicitly
    because Lite keeps the tensor's old shape when only the byte count is compared (a 480x640
    frame after a 640x480 one). Lite holds a reference to the array until the next set; the
    caller must not change it before the forward.
    """
    if share and array.dtype == np.dtype(tensor.layout.dtype):
        import megenginelite as lite

        tensor.set_data_by_share(array, layout=lite.LiteLayout(array.shape, array.dtype))
    else:
        tensor.set_data_by_copy(array)


class LiteRunner(Runner):
    """Runs a ``.mge`` with MegEngine Lite under a named device config.

    Inputs are checked against ``input_spec`` (or the loaded network's own input layout) for
    name, dtype, rank and fixed dimensions before they are copied in: Lite's zero-copy path
    accepts a wrong dtype silently and returns wrong numbers. Outputs are numpy copies.
    ``device`` defaults to the "cpu" config (one thread).
    """

    def __init__(
        self,
        path,
        device: DeviceConfig | str = "cpu",
        input_spec: InputSpec | None = None,
        name=None,
    ):
        super().__init__()
        self.path = Path(path)
        self.device = get_device_config(device)
        self.input_spec = input_spec
        self.name = name or f"{self.path.stem}@{self.device.name}"
        self._network = None
        self._inputs = {}
        self._outputs = {}

    def _activate(self) -> None:
        import megenginelite as lite

        reason = unavailable_reason(self.device)
        if reason:
            raise HarnessError(f"device config {self.device.name!r} cannot run here: {reason}")
        _check_model_file(self.path)
        _quiet_lite(lite)
        network = lite.LiteNetwork(config=self._config(lite))
        if self.device.device == "cpu" and self.device.threads > 1:
            network.threads_number = self.device.threads
        if self.device.device == "cuda":
            network.device_id = self.device.device_id
        try:
            with captured_stderr():  # Lite's own "LITE[ERR] ..." copy of the error
                load_network(network, self.path)
        except RuntimeError as err:
            raise HarnessError(
                f"{self.path}: MegEngine Lite cannot load it ({first_line(err)})"
            ) from None
        if self.device.algo_policy:
            from mge_harness.exporters.devices import ALGO_POLICIES

            flags = 0
            for flag in ALGO_POLICIES[self.device.algo_policy]:
                flags |= getattr(lite.LiteAlgoSelectStrategy, flag)
            network.set_network_algo_policy(flags)
        self._network = network
        self._inputs = {n: network.get_io_tensor(n) for n in network.get_all_input_name()}
        self._outputs = {n: network.get_io_tensor(n) for n in network.get_all_output_name()}
        if self.input_spec and self.input_spec.name not in self._inputs:
            raise HarnessError(
                f"{self.path}: the model has inputs {sorted(self._inputs)}, expected one named "
                f"{self.input_spec.name!r}"
            )

    def _config(self, lite):
        device_type = (
            lite.LiteDeviceType.LITE_CUDA
            if self.device.device == "cuda"
            else lite.LiteDeviceType.LITE_CPU
        )
        config = lite.LiteConfig(device_type=device_type)
        for field, value in self.device.options:
            setattr(config.options, field, value)
        return config

    def _deactivate(self) -> None:
        self._inputs, self._outputs, self._network = {}, {}, None

    @property
    def input_names(self) -> list[str]:
        return sorted(self._inputs)

    @property
    def output_names(self) -> list[str]:
        return list(self._outputs)

    def _check(self, name: str, array: np.ndarray) -> np.ndarray:
        if name not in self._inputs:
            raise HarnessError(
                f"{self.path}: no input named {name!r}; the model has {self.input_names}"
            )
        if not isinstance(array, np.ndarray):
            raise HarnessError(
                f"input {name!r}: expected a numpy array, got {type(array).__name__}"
            )
        spec = self.input_spec
        if spec is not None and spec.name == name:
            if array.dtype != np.dtype(spec.dtype):
                raise HarnessError(
                    f"input {name!r}: expected dtype {spec.dtype}, got {array.dtype}"
                )
            if array.ndim != len(spec.shape) or any(
                want is not None and got != want for got, want in zip(array.shape, spec.shape)
            ):
                want = tuple("any" if d is None else d for d in spec.shape)
                raise HarnessError(
                    f"input {name!r}: expected shape {want} ({spec.layout}), got {array.shape}"
                )
        if 0 in array.shape:
            raise HarnessError(f"input {name!r}: empty array of shape {array.shape}")
        return np.ascontiguousarray(array)

    def set_inputs(self, feed: dict[str, np.ndarray]) -> None:
        """Checks and copies ``feed`` into the network's input tensors."""
        if not self.is_active:
            raise RuntimeError(f"{self.name}: activate() before set_inputs()")
        checked = {name: self._check(name, array) for name, array in feed.items()}
        missing = set(self._inputs) - set(feed)
        if missing:
            raise HarnessError(f"{self.path}: no value for input(s) {sorted(missing)}")
        for name, array in checked.items():
            set_input(self._inputs[name], array, share=self.device.device == "cpu")

    def run(self) -> None:
        """forward + wait on whatever the input tensors hold: the timed call of a benchmark."""
        self._network.forward()
        self._network.wait()

    def fetch(self) -> dict[str, np.ndarray]:
        """Copies of the outputs (Lite reuses its buffers on the next forward)."""
        return {name: tensor.to_numpy() for name, tensor in self._outputs.items()}

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Sets the inputs, runs and fetches the outputs; a Lite failure (e.g. a graph whose
        input is not what the manifest declares) is a one-line HarnessError."""
        self.set_inputs(feed)
        try:
            self.run()
        except RuntimeError as err:
            shapes = ", ".join(f"{n} {a.dtype} {a.shape}" for n, a in feed.items())
            raise HarnessError(
                f"{self.path}: MegEngine Lite fails to run it on {shapes} ({first_line(err)})"
            ) from None
        return self.fetch()


class HostPreprocessRunner(Runner):
    """The external pipeline: OpenCV preprocessing on the host, then a Lite runner.

    Takes ``{"data": uint8 BGR NHWC}`` like a fused graph does, so any variant can be fed the
    same raw images. The host side is ``HostPipeline``: what careful serving code does, and bit
    for bit ``reference_preprocess``.
    """

    def __init__(self, model: LiteRunner, spec: PreprocessSpec, name=None):
        super().__init__()
        #: The Lite runner behind the host pipeline, fed the preprocessed float32 NCHW batch.
        self.model = model
        self.spec = spec
        self.pipeline = HostPipeline(spec)
        self.name = name or f"opencv+{model.name}"

    def _activate(self) -> None:
        self.model.activate()

    def _deactivate(self) -> None:
        self.model.deactivate()

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        images = check_images(feed.get("data"), "input 'data'")
        name = self.model.input_spec.name if self.model.input_spec else "data"
        return self.model.infer({name: self.pipeline(images)})


def lite_runner(entry: VariantEntry, device: DeviceConfig | str = "cpu") -> LiteRunner:
    """A Lite runner for a variant, checking inputs against the variant's input contract."""
    return LiteRunner(
        entry.path,
        device,
        input_spec=entry.input,
        name=f"{entry.id}@{get_device_config(device).name}",
    )


def image_runner(
    entry: VariantEntry, manifest: Manifest, device: DeviceConfig | str = "cpu"
) -> Runner:
    """A runner for any variant that takes raw uint8 BGR NHWC images as ``{"data": ...}``."""
    runner = lite_runner(entry, device)
    if entry.is_raw_input:
        return runner
    return HostPreprocessRunner(runner, manifest.preprocess, name=f"opencv+{runner.name}")


class EagerRunner(Runner):
    """The eager MegEngine module (built-in models): the ground truth the exports came from.

    Feed ``{"data": float32 NCHW}``; with ``fused`` set to a preprocessing spec, feed raw uint8
    BGR NHWC and the in-graph preprocessing ``recipe`` (defaults to "fused") runs eagerly first.
    """

    def __init__(self, module, fused: PreprocessSpec | None = None, name="eager", recipe="fused"):
        super().__init__()
        self.module = module
        self.fused = fused
        self.recipe = recipe
        self.name = name

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import megengine as mge

        from mge_harness.exporters.outputs import flatten_outputs
        from mge_harness.exporters.preprocess import preprocessing_recipe

        x = mge.tensor(feed["data"])
        if self.fused is not None:
            x = preprocessing_recipe(self.recipe)(x, self.fused)
        outputs = flatten_outputs(self.module(x), self.name)
        return {name: tensor.numpy() for name, tensor in outputs.items()}
