"""ResNet18 with the structure and module names of MegEngine Models' classifier.

Mirrors ``official/vision/classification/resnet/model.py``: ``conv1``/``bn1``/``maxpool``,
``layer1``..``layer4`` of two ``BasicBlock``s each (``downsample`` a 1x1 conv + BN where the shape
changes), ``avg_pool2d(x, 7)``, ``flatten`` and ``fc``. Convolutions have no bias, as in Models:
a biased conv followed by BatchNorm does not fuse into ConvBias.
"""

from __future__ import annotations

import megengine.functional as F
import megengine.module as M


class BasicBlock(M.Module):
    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = M.Conv2d(in_channels, channels, 3, stride, padding=1, bias=False)
        self.bn1 = M.BatchNorm2d(channels)
        self.conv2 = M.Conv2d(channels, channels, 3, 1, padding=1, bias=False)
        self.bn2 = M.BatchNorm2d(channels)
        if in_channels == channels and stride == 1:
            self.downsample = M.Identity()
        else:
            self.downsample = M.Sequential(
                M.Conv2d(in_channels, channels, 1, stride, bias=False), M.BatchNorm2d(channels)
            )

    def forward(self, x):
        identity = self.downsample(x)
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.bn2(self.conv2(x))
        return F.relu(x + identity)


class ResNet18(M.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = M.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = M.BatchNorm2d(64)
        self.maxpool = M.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.in_channels = 64
        self.layer1 = self._make_layer(64, stride=1)
        self.layer2 = self._make_layer(128, stride=2)
        self.layer3 = self._make_layer(256, stride=2)
        self.layer4 = self._make_layer(512, stride=2)
        self.fc = M.Linear(512, num_classes)

    def _make_layer(self, channels: int, stride: int, blocks: int = 2) -> M.Sequential:
        layers = []
        for s in [stride] + [1] * (blocks - 1):
            layers.append(BasicBlock(self.in_channels, channels, s))
            self.in_channels = channels
        return M.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        # Models pools a fixed 7x7 window: right at 224x224 input only, which is why the
        # external variants accept exactly the preprocessing size.
        x = F.avg_pool2d(x, 7)
        return self.fc(F.flatten(x, 1))
