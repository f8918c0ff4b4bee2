"""Factories standing in for a user's own models (``--model tests.userzoo:NAME``)."""

import megengine as mge
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


class TupleNet(SmallNet):
    """Returns a tuple: logits and a feature map (exported as out0, out1)."""

    def forward(self, x):
        features = F.relu(self.bn(self.conv(x)))
        logits = self.fc(F.flatten(F.mean(features, axis=(2, 3), keepdims=True), 1))
        return logits, features


def tuple_net():
    return TupleNet()


class DictNet(TupleNet):
    """Returns a dict: {"scores": logits, "features": feature map}."""

    def forward(self, x):
        logits, features = super().forward(x)
        return {"scores": logits, "features": features}


def dict_net():
    return DictNet()


class DetectNet(M.Module):
    """Detection-like: one (N, K, 6) output of K boxes (x0, y0, x1, y1 in pixels of the input,
    score, class score), plus the constant anchors a detector carries along."""

    def __init__(self, boxes: int = 16):
        super().__init__()
        self.conv1 = M.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn1 = M.BatchNorm2d(8)
        self.conv2 = M.Conv2d(8, 6, 3, stride=2, padding=1)
        self.boxes = boxes

    def forward(self, x):
        y = self.conv2(F.relu(self.bn1(self.conv1(x))))
        y = F.adaptive_avg_pool2d(y, (4, self.boxes // 4))
        y = F.transpose(F.flatten(y, 2), (0, 2, 1))  # (N, K, 6)
        scale = mge.tensor([224.0, 224.0, 224.0, 224.0, 1.0, 1.0])  # pixels, score, class
        return {"boxes": F.sigmoid(y) * scale, "anchors": F.ones((1, self.boxes, 4))}


def detect_net():
    return DetectNet()


class FixedSizeNet(SmallNet):
    """Runs only at 32x32: a fixed 32x32 average pool, like MegEngine Models' ResNet's
    ``avg_pool2d(x, 7)``."""

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = F.avg_pool2d(x, 32)
        return self.fc(F.reshape(x, (-1, 4)))


def fixed_size_net():
    return FixedSizeNet()


class BadKeyNet(SmallNet):
    def forward(self, x):
        return {3: super().forward(x)}


def bad_key_net():
    return BadKeyNet()


class NestedNet(SmallNet):
    def forward(self, x):
        logits = super().forward(x)
        return logits, [logits, logits]


def nested_net():
    return NestedNet()


class OffsetNet(SmallNet):
    """Logits with a large constant offset (1000): raw cosine is near 1 whatever the input-
    dependent part does, and errors of a few units pass an elementwise atol."""

    def forward(self, x):
        return super().forward(x) + 1000.0


def offset_net():
    return OffsetNet()
