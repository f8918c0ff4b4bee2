"""User-style models written in MegEngine's quantizable layers (``--model tests.int8zoo:NAME``),
for the int8 variant's user-model path.

``shufflenet_like``: ShuffleNet V2 units (channel split, 1x1 / depthwise 3x3 / 1x1 branch,
``M.Concat``, channel shuffle by reshape and transpose) with random weights and BatchNorm
calibrated as the zoo does, at 64x64. ``plus_join``: the same, but each unit joins its halves
with ``+`` instead of ``M.Concat``: int8 tensors of two scales, which MegEngine refuses.
"""

import megengine.functional as F
import megengine.module as M

from mge_harness.exporters.preprocess import PreprocessSpec
from mge_harness.exporters.zoo import calibrate_batchnorm, seeded_state_dict

SIZE = (64, 64)


def _shuffle(x):
    n, c, h, w = x.shape
    return x.reshape(n, 2, c // 2, h, w).transpose(0, 2, 1, 3, 4).reshape(n, c, h, w)


def _branch(cin: int, cout: int, stride: int):
    return M.Sequential(
        M.ConvBnRelu2d(cin, cout, 1, bias=False),
        M.ConvBn2d(cout, cout, 3, stride, padding=1, groups=cout, bias=False),
        M.ConvBnRelu2d(cout, cout, 1, bias=False),
    )


class Unit(M.Module):
    """Stride 1: half the channels pass, half go through the branch. Stride 2: both halves
    come from the whole input (the left one through a depthwise + 1x1 shortcut)."""

    def __init__(self, cin: int, cout: int, stride: int, plus: bool = False):
        super().__init__()
        half = cout // 2
        self.stride, self.plus = stride, plus
        self.right = _branch(cin if stride == 2 else half, half, stride)
        self.left = (
            M.Sequential(
                M.ConvBn2d(cin, cin, 3, stride, padding=1, groups=cin, bias=False),
                M.ConvBnRelu2d(cin, half, 1, bias=False),
            )
            if stride == 2
            else None
        )
        self.cat = None if plus else M.Concat()  # a layer never called has no int8 range

    def forward(self, x):
        if self.stride == 1:
            half = x.shape[1] // 2
            left, right = x[:, :half], self.right(x[:, half:])
        else:
            left, right = self.left(x), self.right(x)
        if self.plus:
            return F.concat([left + right, right], axis=1)
        return _shuffle(self.cat([left, right], axis=1))


class ShuffleNetLike(M.Module):
    def __init__(self, num_classes: int = 10, plus: bool = False):
        super().__init__()
        self.stem = M.ConvBnRelu2d(3, 16, 3, 2, padding=1, bias=False)
        self.units = M.Sequential(
            Unit(16, 32, 2, plus), Unit(32, 32, 1), Unit(32, 64, 2, plus), Unit(64, 64, 1)
        )
        self.dequant = M.DequantStub()
        self.fc = M.Linear(64, num_classes)
        self.fc.disable_quantize()  # the float head, after the DequantStub

    def forward(self, x):
        x = self.units(self.stem(x))
        return self.fc(F.mean(self.dequant(x), axis=(2, 3)))


def _calibrated(module):
    module.load_state_dict(seeded_state_dict(module, 5))
    calibrate_batchnorm(module, PreprocessSpec(size=SIZE), 32, 5)
    return module


def shufflenet_like():
    return _calibrated(ShuffleNetLike())


def plus_join():
    return _calibrated(ShuffleNetLike(plus=True))
