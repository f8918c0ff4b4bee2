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
