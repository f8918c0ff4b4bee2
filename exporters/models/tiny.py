"""A tiny CNN (two conv-BN-ReLU stages, global pooling, linear) for fast unit tests.

Same ingredients as the real models (bias-free convs followed by BatchNorm, so conv-bias
fusion has work to do) at a 32x32 input and about 1.5k parameters.
"""

from __future__ import annotations

import megengine.functional as F
import megengine.module as M


class TinyCNN(M.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = M.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = M.BatchNorm2d(8)
        self.conv2 = M.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.bn2 = M.BatchNorm2d(16)
        self.fc = M.Linear(16, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(F.flatten(F.mean(x, axis=(2, 3), keepdims=True), 1))
