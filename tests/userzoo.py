"""Factories standing in for a user's own models (``--model tests.userzoo:NAME``)."""

import megengine.functional as F
import megengine.module as M


class SmallNet(M.Module):
    def __init__(self):
        super().__init__()
        self.conv = M.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = M.BatchNorm2d(4)
        self.fc = M.Linear(4, 5)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        return self.fc(F.flatten(F.mean(x, axis=(2, 3), keepdims=True), 1))


def small_net():
    return SmallNet()


def broken():
    raise RuntimeError("CUDA out of memory (pretend)")


def not_a_module():
    return 42


class ClipNet(M.Module):
    """A ReLU6-like ``F.clip(x, 1, 6)``: MegEngine 1.13 dumps it wrongly (Lite then returns the
    same outputs for every image), while the eager module responds to its input."""

    def __init__(self):
        super().__init__()
        self.conv = M.Conv2d(3, 8, 3, padding=1)
        self.fc = M.Linear(8, 5)

    def forward(self, x):
        x = F.clip(self.conv(x), 1, 6)
        return self.fc(F.flatten(F.mean(x, axis=(2, 3), keepdims=True), 1))


def clip_net():
    return ClipNet()


class DeafNet(SmallNet):
    """Ignores its input in effect: the image reaches the head scaled by 1e-9 and the outputs
    sit near 1, so they vary between images by float noise only (as random-init
    ShuffleNetV2's do, by 4e-9)."""

    def forward(self, x):
        return super().forward(x * 1e-9) + 1.0


def deaf_net():
    return DeafNet()
