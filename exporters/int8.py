"""Int8 post-training quantization: the opt-in ``int8`` variant (``--variants int8``).

The float module is rewritten into MegEngine's quantizable layers (conv + BatchNorm as
``ConvBn2d`` / ``ConvBnRelu2d``, residual adds as ``M.Elemwise``), wrapped in ``QuantStub`` /
``DequantStub``, converted with ``quantize_qat(calibration_qconfig)`` (MinMax observers on
weights, histogram observers on activations), calibrated, then ``quantize``-d into int8 modules
and dumped like an external variant: float32 NCHW in, float32 logits out (the stubs become
TypeCvt oprs in the graph). The classifier head (global pooling and the last Linear) stays
float: it costs nothing next to the convolutions and keeps the logits' resolution.

Calibration set (:func:`calibration_batch`): real photos bundled with scikit-image that are NOT
in the gate's photo set (``equivalence.photos``), so the int8 check judges generalisation, not
the calibration photos themselves; plus the zoo's generated image-like pictures.

MegEngine traps handled here (``MEGENGINE_NOTES.md`` section 8): ``.eval()`` after
``quantize_qat`` turns observers off silently (weight scale stays at its init, cosine 0.64 on
ResNet18), so observers are enabled after the last ``.eval()``; modules from ``quantize()``
start in training mode and refuse to run ("quantized module only support inference"), so the
result is put in eval mode; the histogram observers' scale search is pure Python (seconds).

Functional ops between quantized layers get int8 tensors. Measured in MegEngine 1.13 eager:
``F.relu``, ``F.nn.pad`` (zero point 0), max pooling, reshapes, ``F.minimum(x, 1.0)``,
``F.mean`` (returns float32) and ``x + x`` give the right values; ``a + b`` of two int8
tensors with different scales raises ("trying to promote two QuantizedS8 with different
scale"): residual adds must be ``M.Elemwise("ADD")``, which requantizes. A user's model is
quantized when every layer with weights becomes a quantizable one (no stray BatchNorm, which
must be fused with its conv), the int8 model runs on the calibration images, and its outputs
there keep a cosine of at least ``FOLLOWS_COSINE_MIN`` to the float model's; otherwise the
export stops with a one-line reason.

**The int8 rule** (the gate's ``int8`` check, ``equivalence.checks``). Int8 cannot meet the
float checks' tolerances, so an int8 variant is judged against the float reference pipeline
(OpenCV + the release's float external variant) on the gate's 15 photos, as one batch scaled
to 320x320 (``equivalence.photos.photo_batch``): every photo's logits keep a cosine of at
least ``INT8_COSINE_MIN``, an RMS error of at most ``INT8_SPREAD_RATIO`` times the reference's
between-image spread, a centred cosine of at least ``INT8_CENTRED_COSINE_MIN`` and
``|out - ref| <= INT8_ATOL``; and at least ``INT8_TOP1_MIN`` of the photos keep the reference's
top-1 class, at least ``INT8_TOP5_MIN`` have it among the int8 top 5.

Measured 2026-12 (MegEngine 1.13, Lite CPU default config; "photos": that one batch;
"groups": the 15 photos at their native sizes in 13 same-size batches, worst batch; tiny,
ResNet18 and the ShuffleNet-like user model have random weights with calibrated BatchNorm,
EfficientNet-Lite0 is ImageNet-trained; "broken": calibrated on inputs at 2 % of their scale,
every activation saturates on real photos)::

    model                     set     max abs  min cos  max spread  min centred  top-1  in top-5
    tiny                      photos  0.388    0.9994   0.096       0.9996       100 %  100 %
                              groups  0.403    0.9994   0.100       0.9987       100 %  100 %
    resnet18                  photos  8.73     0.9555   0.394       0.9927        73 %  100 %
                              groups  10.0     0.9672   0.521       0.9833        73 %   93 %
    efficientnet_lite0        photos  3.45     0.7945   0.829       0.9538        80 %  100 %
                              groups  3.17     0.8837   0.646       0.8728        93 %  100 %
    shufflenet_like (user)    photos  2.54     0.9901   0.897       0.9911       100 %  100 %
                              groups  2.70     0.9840   0.948       0.9834       100 %  100 %
    tiny, broken              photos  18.7    -0.6219   5.74       -0.3643         7 %   20 %
    resnet18, broken          photos  60.5    -0.4060   3.11       -0.4081         0 %    0 %

Thresholds, each from the worst correct figure (either set) with room, and far from the
broken ones: cosine 0.7 (worst 0.7945: 1.46x its 1 - cosine), centred cosine 0.8 (worst
0.8728), spread ratio 1.5 (worst 0.948; broken >= 3.1), atol 20 (2x the worst 10.0; the
scale-free figures decide, atol only bounds a single logit), top-1 kept 60 % (worst 73 %,
broken <= 7 %), top-1 in top 5 80 % (worst 93 %, broken <= 20 %). With 15 photos a share
moves in steps of 6.7 %. On random weights the class shares say little (ResNet18's
standardised logits have near-ties), which is why the cosine and spread figures carry the
rule; EfficientNet-Lite0 is the weakest correct case (its depthwise convs already stay
float: with per-tensor int8 weights its smallest cosine on the photos was 0.75).

Speed (``docs/INT8.md``, paired timing on the 2-vCPU AVX-512 Xeon, heavily shared): ResNet18
int8 against float at Lite's default 1.05 [0.87, 1.12] (batch 1) and 1.07 [0.88, 1.20]
(batch 4), against float NCHW88 1.01 [0.86, 1.08] and 1.00 [0.93, 1.07]: no gain here.
"""

from __future__ import annotations

import copy

import numpy as np

from mge_harness.exporters.errors import HarnessError, first_line
from mge_harness.exporters.preprocess import PreprocessSpec

QUANTIZATIONS = ("int8",)

#: The int8 rule (``equivalence.checks`` "int8"; measured table in the module docstring).
INT8_COSINE_MIN = 0.7
INT8_CENTRED_COSINE_MIN = 0.8
INT8_SPREAD_RATIO = 1.5
INT8_ATOL = 20.0
INT8_TOP1_MIN = 0.6
INT8_TOP5_MIN = 0.8

#: The export-time self-check's floor (``check_follows_float``): the smallest cosine of int8 to
#: float logits on the calibration images. Correct exports: tiny 0.997, ResNet18 0.890,
#: EfficientNet-Lite0 0.747: a gross floor against a quantized forward that computes
#: something else, not a quality bar (the gate's int8 check is that).
FOLLOWS_COSINE_MIN = 0.5

#: scikit-image photos outside the gate's photo set, used to calibrate: greyscale textures,
#: micrographs, a colour wheel and a fundus photo (decoded as BGR, grey repeated to 3 channels).
CALIBRATION_PHOTOS = (
    "brick",
    "grass",
    "gravel",
    "moon",
    "page",
    "text",
    "cell",
    "colorwheel",
    "retina",
    "microaneurysms",
)
#: Generated image-like pictures added to the photos (``exporters.zoo.calibration_images``).
CALIBRATION_GENERATED = 22
CALIBRATION_SEED = 8


def calibration_photos() -> list[np.ndarray]:
    """The calibration photos as uint8 BGR images of their own sizes (scikit-image's: the
    ``photos`` extra, named in a one-line error when it is missing)."""
    from mge_harness.exporters.images import to_bgr8

    try:
        import skimage.data
    except ImportError:
        raise HarnessError(
            "--variants int8 calibrates on scikit-image's sample photos, which are not "
            "installed: pip install 'mge-release-harness[photos]'"
        ) from None

    photos = []
    for name in CALIBRATION_PHOTOS:
        image = getattr(skimage.data, name)()
        if image.ndim == 3:
            image = np.ascontiguousarray(image[:, :, ::-1])  # scikit-image gives RGB
        photos.append(to_bgr8(image, name))
    return photos


def calibration_batch(spec: PreprocessSpec) -> np.ndarray:
    """Calibration inputs, float32 NCHW as the reference pipeline preprocesses them."""
    from mge_harness.exporters.preprocess import reference_preprocess
    from mge_harness.exporters.zoo import calibration_images

    photos = [reference_preprocess(p[None], spec) for p in calibration_photos()]
    generated = calibration_images(CALIBRATION_GENERATED, spec.size, CALIBRATION_SEED)
    return np.concatenate([*photos, reference_preprocess(generated, spec)])


# --- quantizable rewrites of the built-in models -----------------------------------------------


def _conv_bn(conv, bn, relu: bool):
    """A fusable ConvBn2d / ConvBnRelu2d with the weights and statistics of ``conv`` and ``bn``."""
    import megengine.module as M

    kind = M.ConvBnRelu2d if relu else M.ConvBn2d
    fused = kind(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=conv.bias is not None,
        eps=bn.eps,
    )
    fused.conv.load_state_dict(conv.state_dict())
    fused.bn.load_state_dict(bn.state_dict())
    return fused


def _keep_float(module):
    """``module`` marked to stay float32 through ``quantize_qat`` and ``quantize``."""
    module.disable_quantize()
    return module


class _Stubbed:
    """Mixin: ``QuantStub`` in, the quantizable ``features``, ``DequantStub``, float ``head``."""

    def forward(self, x):
        return self.head(self.dequant(self.features(self.quant(x))))


def _stubbed_module(features, head):
    import megengine.module as M

    class Int8Net(_Stubbed, M.Module):
        def __init__(self):
            super().__init__()
            self.quant = M.QuantStub()
            self.features = features
            self.dequant = M.DequantStub()
            self.head = head

    return Int8Net()


def _resnet18(float_module):
    import megengine.functional as F
    import megengine.module as M

    class Block(M.Module):
        def __init__(self, block):
            super().__init__()
            self.conv_bn_relu1 = _conv_bn(block.conv1, block.bn1, relu=True)
            self.conv_bn2 = _conv_bn(block.conv2, block.bn2, relu=False)
            ds = block.downsample
            self.downsample = (
                ds if isinstance(ds, M.Identity) else _conv_bn(ds[0], ds[1], relu=False)
            )
            self.add_relu = M.Elemwise("FUSE_ADD_RELU")

        def forward(self, x):
            return self.add_relu(self.conv_bn2(self.conv_bn_relu1(x)), self.downsample(x))

    class Features(M.Module):
        def __init__(self, net):
            super().__init__()
            self.stem = _conv_bn(net.conv1, net.bn1, relu=True)
            self.maxpool = net.maxpool
            self.blocks = [Block(b) for layer in _layers(net) for b in layer]

        def forward(self, x):
            x = self.maxpool(self.stem(x))
            for block in self.blocks:
                x = block(x)
            return x

    class Head(M.Module):
        def __init__(self, fc):
            super().__init__()
            self.fc = fc

        def forward(self, x):
            return self.fc(F.flatten(F.avg_pool2d(x, 7), 1))

    return _stubbed_module(Features(float_module), _keep_float(Head(float_module.fc)))


def _layers(net):
    return (net.layer1, net.layer2, net.layer3, net.layer4)


class _MeanLinear:
    """Head mixin: global mean over H, W, then the float ``fc``."""

    def forward(self, x):
        import megengine.functional as F

        return self.fc(F.mean(x, axis=(2, 3)))


def _mean_linear_head(fc):
    import megengine.module as M

    class Head(_MeanLinear, M.Module):
        def __init__(self):
            super().__init__()
            self.fc = fc

    return _keep_float(Head())


def _tiny(float_module):
    import megengine.module as M

    features = M.Sequential(
        _conv_bn(float_module.conv1, float_module.bn1, relu=True),
        _conv_bn(float_module.conv2, float_module.bn2, relu=True),
    )
    return _stubbed_module(features, _mean_linear_head(float_module.fc))


#: ReLU6 in int8: a ConvBnRelu2d whose output scale is capped at 6/127, so that int8
#: saturation at 127 is exactly the clip at 6 (``_cap_relu6``).
RELU6_CAP = 6.0


def _efficientnet_lite0(float_module):
    import megengine.functional as F
    import megengine.module as M

    class ConvBN(M.Module):
        def __init__(self, unit):
            super().__init__()
            self.pad = unit.pad
            self.conv_bn = _conv_bn(unit.conv, unit.bn, relu=unit.act)
            self.conv_bn.relu6 = unit.act

        def forward(self, x):
            if self.pad is not None:  # zero padding is exact on int8 (zero point 0)
                x = F.nn.pad(x, self.pad)
            return self.conv_bn(x)

    class FloatDepthwise(M.Module):
        """Depthwise conv in float between stubs: per-tensor int8 weights cannot hold its
        folded BatchNorm's range (running variances below 1e-3 on 639 channels)."""

        def __init__(self, unit):
            super().__init__()
            self.dequant, self.quant = M.DequantStub(), M.QuantStub()
            self.depthwise = _keep_float(unit)  # its own name: MegEngine warns on a rename

        def forward(self, x):
            return self.quant(self.depthwise(self.dequant(x)))

    class MBConv(M.Module):
        def __init__(self, block):
            super().__init__()
            self.expand = ConvBN(block.expand) if block.expand is not None else None
            self.depthwise = FloatDepthwise(block.depthwise)
            self.project = ConvBN(block.project)
            self.add = M.Elemwise("ADD") if block.residual else None

        def forward(self, x):
            y = self.expand(x) if self.expand is not None else x
            y = self.project(self.depthwise(y))
            return self.add(x, y) if self.add is not None else y

    class Features(M.Module):
        def __init__(self, net):
            super().__init__()
            self.stem = ConvBN(net.stem)
            self.blocks = [MBConv(b) for b in net.blocks]
            self.head = ConvBN(net.head)

        def forward(self, x):
            x = self.stem(x)
            for block in self.blocks:
                x = block(x)
            return self.head(x)

    return _stubbed_module(Features(float_module), _mean_linear_head(float_module.fc))


_REWRITES = {"resnet18": _resnet18, "tiny": _tiny, "efficientnet_lite0": _efficientnet_lite0}


def quantizable(float_module, model: str, builtin: bool):
    """A copy of ``float_module`` in quantizable layers between QuantStub and DequantStub.

    Built-in models are rewritten (``_REWRITES``); a user's module is wrapped as it is, and must
    already be written in quantizable layers (see the module docstring).
    """
    module = copy.deepcopy(float_module)
    if builtin:
        return _REWRITES[model](module)
    import megengine.module as M

    return _stubbed_module(module, M.Identity())


# --- quantization ------------------------------------------------------------------------------


def unquantizable_layer(qat_module) -> str | None:
    """The first layer of a ``quantize_qat``-converted module that holds weights but did not
    become a QAT layer (a BatchNorm not fused with its conv, say), as a reason; None if none."""
    modules = dict(qat_module.named_modules())
    for name, sub in modules.items():
        if _converted_or_disabled(modules, name):
            continue
        if any(_is_parameter(p) for p in sub.__dict__.values()):
            kind = type(sub).__name__
            hint = " (fuse it with its conv: M.ConvBn2d / M.ConvBnRelu2d)" * ("BatchNorm" in kind)
            return f"layer {_layer_name(name)!r} ({kind}) cannot be quantized{hint}"
    return None


def _is_parameter(value) -> bool:
    from megengine import Parameter

    return isinstance(value, Parameter)


def _converted_or_disabled(modules: dict, name: str) -> bool:
    """True when the layer ``name`` or one that holds it is a QAT layer or quantize-disabled."""
    from megengine.module.qat import QATModule

    parts = name.split(".") if name else []
    for i in range(len(parts) + 1):
        holder = modules.get(".".join(parts[:i]))
        if isinstance(holder, QATModule) or getattr(holder, "quantize_disabled", False):
            return True
    return False


def _relu6_names(module) -> set[str]:
    """Names of the layers tagged ``relu6`` (the tag does not survive ``quantize_qat``)."""
    return {name for name, sub in module.named_modules() if getattr(sub, "relu6", False)}


def unobserved_layer(qat_module) -> str | None:
    """The first QAT layer whose activation observer saw no data (its max is still at the
    observer's initial float32 minimum), by name; None when every one saw some."""
    from megengine.module.qat import QATModule

    for name, sub in qat_module.named_modules():
        observer = getattr(sub, "act_observer", None) if isinstance(sub, QATModule) else None
        max_val = getattr(observer, "max_val", None)
        if max_val is not None and float(max_val.numpy()) <= np.finfo(np.float32).min:
            return _layer_name(name)
    return None


def _layer_name(name: str) -> str:
    """A layer's name as the model names it (without the stub wrapper's ``features.``)."""
    return name.removeprefix("features.")


def _cap_relu6(qat_module, names: set[str]) -> None:
    """Caps the output scale of the ReLU6 layers ``names`` at ``RELU6_CAP / 127``."""
    from megengine.quantization.observer import PassiveObserver

    for name, sub in qat_module.named_modules():
        if name not in names:
            continue
        qparams = sub.get_activation_qparams()
        cap = RELU6_CAP / 127.0
        if float(qparams.scale.numpy().max()) <= cap:
            continue  # never reached 6 on the calibration set: ReLU6 is ReLU there
        qparams.scale[...] = cap
        observer = PassiveObserver(dtype="qint8")
        observer.set_qparams(qparams)
        sub.act_observer = observer


def quantize_module(float_module, model: str, builtin: bool, batch: np.ndarray):
    """The int8 module of ``float_module``, calibrated on ``batch`` (float32 NCHW), eval mode.

    HarnessError when a user's model has a layer that cannot be quantized, or one that the
    calibration never ran (no int8 range: ``quantize`` would fail on a NaN).
    """
    import megengine as mge
    from megengine.quantization import (
        calibration_qconfig,
        enable_observer,
        quantize,
        quantize_qat,
    )

    module = quantizable(float_module, model, builtin)
    module.eval()
    relu6 = _relu6_names(module)
    qat = quantize_qat(module, qconfig=calibration_qconfig)
    reason = unquantizable_layer(qat)
    if reason:
        raise HarnessError(f"{model}: cannot export int8: {reason}")
    qat.eval()
    enable_observer(qat)  # after the last .eval(), which turned them off
    for start in range(0, len(batch), 8):
        qat(mge.tensor(batch[start : start + 8]))
    idle = unobserved_layer(qat)
    if idle:
        raise HarnessError(
            f"{model}: cannot export int8: layer {idle!r} never ran on the calibration "
            "images, so it has no int8 range (a quantizable layer the forward does not call)"
        )
    _cap_relu6(qat, relu6)
    quantized = quantize(qat)
    quantized.eval()  # quantize() leaves modules in training mode
    return quantized


def agreement(float_logits: np.ndarray, int8_logits: np.ndarray) -> dict[str, float]:
    """The int8 rule's figures on a batch: smallest per-image cosine, top-1 agreement, and the
    share of images whose float top-1 is in the int8 top-5."""
    ref = float_logits.reshape(len(float_logits), -1).astype(np.float64)
    out = int8_logits.reshape(len(int8_logits), -1).astype(np.float64)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    cosine = np.sum(ref * out, axis=1) / np.where(norms > 0, norms, np.inf)
    top1 = ref.argmax(axis=1)
    top5 = np.argsort(-out, axis=1)[:, :5]
    return {
        "cosine_min": float(cosine.min()),
        "top1": float(np.mean(top1 == out.argmax(axis=1))),
        "top1_in_top5": float(np.mean([t in row for t, row in zip(top1, top5)])),
    }


def check_follows_float(float_module, int8_module, batch: np.ndarray, model: str) -> None:
    """HarnessError when the int8 module's outputs on ``batch`` break the int8 rule against the
    float module's: what a functional op seeing raw int8 values does (see module docstring)."""
    import megengine as mge

    try:
        ref = float_module(mge.tensor(batch)).numpy()
        out = int8_module(mge.tensor(batch)).numpy()
    except Exception as err:  # the user's model on int8 tensors: one line
        raise HarnessError(
            f"{model}: cannot export int8: the quantized model fails on the calibration images "
            f"({type(err).__name__}: {first_line(err)}); write adds of two quantized tensors "
            "as M.Elemwise('ADD')"
        ) from None
    figures = agreement(ref, out)
    if not figures["cosine_min"] >= FOLLOWS_COSINE_MIN:
        raise HarnessError(
            f"{model}: cannot export int8: its int8 outputs do not follow the float model "
            f"(smallest cosine {figures['cosine_min']:.3f} < {FOLLOWS_COSINE_MIN} on the calibration "
            "images)"
        )


def int8_module(float_module, model):
    """The int8 module of a zoo model (``exporters.zoo.ModelSpec``) and its built
    ``float_module``, calibrated on :func:`calibration_batch`; HarnessError with a one-line
    reason when a user's model cannot be quantized."""
    batch = calibration_batch(model.preprocess)
    quantized = quantize_module(float_module, model.name, model.builtin, batch)
    check_follows_float(float_module, quantized, batch, model.name)
    return quantized
