"""``exporters.classify``: the Classifier, image reading and the ``python -m exporters.classify`` CLI.

Photo checks run EfficientNet-Lite0 (ImageNet weights) on scikit-image's photos, whose labels
were checked by eye, through every variant; they skip when the weights package is missing.
Everything else runs on the ``tiny`` built-in release (10 classes).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mge_harness.exporters.classify import Classifier, class_names, format_text, main, softmax
from mge_harness.exporters.errors import HarnessError, run_cli
from mge_harness.exporters.images import read_image, to_bgr8
from mge_harness.exporters.variants import default_matrix

ROOT = Path(__file__).resolve().parent.parent

LITE0 = "efficientnet_lite0"
LITE0_VARIANTS = [v.id for v in default_matrix(LITE0) if not v.expected_failure]
IDENTITY_WARP = next(v.id for v in default_matrix(LITE0) if v.preprocessing == "identity-warp")

#: Photo -> ImageNet classes its top-1 must be (checked by looking at the photos; plain resize).
EXPECTED_TOP1 = {
    "chelsea": set(range(281, 286)),  # an orange tabby: tabby, tiger/Persian/Siamese/Egyptian cat
    "camera": {872},  # grey photo of a man filming; the camera stands on a tripod: tripod
    "motorcycle": {665},  # a red motorcycle; ImageNet has no such class: moped
}
#: Espresso in a cup on a saucer: espresso, cup and coffee mug all fit.
COFFEE_TOP5 = {504, 967, 968}


def export(model: str, folder: Path) -> Path:
    from mge_harness.exporters.export import export_release
    from mge_harness.exporters.zoo import builtin_spec

    export_release(builtin_spec(model), folder, progress=None)
    return folder


@pytest.fixture(scope="module")
def tiny_release(tmp_path_factory) -> Path:
    return export("tiny", tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def lite0_release(tmp_path_factory) -> Path:
    from mge_harness.exporters.models.efficientnet import default_weights_path

    try:
        default_weights_path()
    except HarnessError as err:
        pytest.skip(str(err))
    return export(LITE0, tmp_path_factory.mktemp("lite0"))


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    """scikit-image photos as PNG files (colour ones written BGR, camera as a grey PNG)."""
    import cv2

    data = pytest.importorskip("skimage.data")
    folder = tmp_path_factory.mktemp("photos")
    images = {
        "chelsea": data.chelsea()[:, :, ::-1],
        "coffee": data.coffee()[:, :, ::-1],
        "camera": data.camera(),
        "motorcycle": data.stereo_motorcycle()[0][:, :, ::-1],
    }
    paths = {}
    for name, image in images.items():
        paths[name] = folder / f"{name}.png"
        assert cv2.imwrite(str(paths[name]), image)
    return paths


@pytest.fixture(scope="module")
def lite0_results(lite0_release, photos) -> dict[str, dict[str, object]]:
    """Top-5 per photo for every variant, including identity-warp (named explicitly)."""
    results = {}
    for variant in [*LITE0_VARIANTS, IDENTITY_WARP]:
        with Classifier(lite0_release, variant=variant) as classifier:
            found = classifier.classify(list(photos.values()))
        results[variant] = dict(zip(photos, found, strict=True))
    return results


def top5(result) -> list[tuple[int, str, float]]:
    return [(p.index, p.name, round(p.probability, 3)) for p in result.predictions]


@pytest.mark.parametrize("variant", LITE0_VARIANTS)
def test_photos_are_classified_by_every_variant(lite0_results, photos, variant):
    from mge_harness.exporters.models.imagenet import class_names as imagenet_names

    results = lite0_results[variant]
    assert [r.source for r in results.values()] == [str(p) for p in photos.values()]
    for photo, classes in EXPECTED_TOP1.items():
        assert results[photo].top.index in classes, f"{photo}: {top5(results[photo])}"
    coffee = {p.index for p in results["coffee"].predictions}
    assert coffee >= COFFEE_TOP5, top5(results["coffee"])
    names = imagenet_names()
    for result in results.values():
        assert len(result.predictions) == 5
        assert all(p.name == names[p.index] for p in result.predictions)
        probabilities = [p.probability for p in result.predictions]
        assert probabilities == sorted(probabilities, reverse=True)


def test_identity_warp_is_used_only_when_named_and_crops(lite0_release, lite0_results):
    assert Classifier(lite0_release).variant.id == f"{LITE0}.fused.cbn-on"
    warped = lite0_results[IDENTITY_WARP]
    # The top-left 224x224 window of the camera photo shows the man's coat, not the tripod; of
    # the motorcycle photo, the background. Those lose their top-1; the cat fills its crop.
    assert warped["camera"].top.index not in EXPECTED_TOP1["camera"], top5(warped["camera"])
    assert warped["motorcycle"].top.index not in EXPECTED_TOP1["motorcycle"]
    assert warped["chelsea"].top.index in EXPECTED_TOP1["chelsea"]


def test_cli_prints_the_top1_line_without_noise(lite0_release, photos):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-m", "exporters.classify", "--release", str(lite0_release),
         str(photos["chelsea"])],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert re.fullmatch(
        rf"{re.escape(str(photos['chelsea']))}: 28[1-5] [a-zA-Z ]+ 0\.\d{{3}}\n", result.stdout
    ), result.stdout


# --- variant choice ------------------------------------------------------------------------


def edited_copy(release: Path, folder: Path, edit) -> Path:
    """A copy of ``release`` whose manifest.json went through ``edit(dict)``."""
    shutil.copytree(release, folder)
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return folder


def mark_failing(*preprocessings):
    def edit(data):
        for entry in data["variants"]:
            if entry["preprocessing"] in preprocessings:
                entry["expected_failure"] = "marked by the test"

    return edit


def test_default_variant_skips_expected_failures(tiny_release, tmp_path):
    assert Classifier(tiny_release).variant.id == "tiny.fused.cbn-on"
    no_fused = edited_copy(tiny_release, tmp_path / "a", mark_failing("fused"))
    assert Classifier(no_fused).variant.id == "tiny.external.cbn-off"
    only_fused_off = edited_copy(
        tiny_release, tmp_path / "b", mark_failing("external", "identity-warp")
    )
    assert Classifier(only_fused_off).variant.id == "tiny.fused.cbn-on"
    everything = edited_copy(
        tiny_release, tmp_path / "c", mark_failing("external", "fused", "identity-warp")
    )
    with pytest.raises(HarnessError, match="every variant is marked expected_failure; name one"):
        Classifier(everything)
    assert Classifier(everything, variant="tiny.fused.cbn-off").variant.id == "tiny.fused.cbn-off"


# --- batching ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pictures() -> list[np.ndarray]:
    """Three BGR pictures: two 40x52 and one 37x29, so batches have to be grouped."""
    from mge_harness.exporters.zoo import calibration_images

    same = calibration_images(2, (40, 52), seed=1)
    return [same[0], calibration_images(1, (37, 29), seed=2)[0], same[1]]


def recorded_batches(classifier: Classifier) -> list[tuple[int, ...]]:
    """Shapes of the arrays the classifier feeds to its Lite runner, recorded as it runs."""
    runner = getattr(classifier.runner, "model", classifier.runner)
    shapes = []
    infer = runner.infer

    def spy(feed):
        shapes.append(feed["data"].shape)
        return infer(feed)

    runner.infer = spy
    return shapes


@pytest.mark.parametrize(
    "variant, expected",
    [
        ("tiny.fused.cbn-on", [(2, 40, 52, 3), (1, 37, 29, 3)]),
        ("tiny.external.cbn-off", [(3, 3, 32, 32)]),
    ],
)
def test_batches_group_same_sizes_and_match_single_images(
    tiny_release, pictures, variant, expected
):
    classifier = Classifier(tiny_release, variant=variant, top_k=10)
    shapes = recorded_batches(classifier)
    batched = classifier.classify(pictures)
    assert shapes == expected
    singles = Classifier(tiny_release, variant=variant, top_k=10, batch_size=1).classify(pictures)
    for got, want in zip(batched, singles, strict=True):
        assert [p.index for p in got.predictions] == [p.index for p in want.predictions]
        np.testing.assert_allclose(
            [p.probability for p in got.predictions],
            [p.probability for p in want.predictions],
            rtol=0,
            atol=1e-6,  # measured 0 on tiny; batch size may change the conv algorithm
        )


def test_paths_and_arrays_mix_in_one_call(tiny_release, pictures, tmp_path):
    import cv2

    path = tmp_path / "first.png"
    cv2.imwrite(str(path), pictures[0])
    classifier = Classifier(tiny_release, top_k=10, batch_size=1)
    mixed = classifier.classify([path, pictures[1], str(path), np.stack(pictures[::2])])
    sources = [r.source for r in mixed]
    assert sources == [str(path), "array[1]", str(path), "array[3][0]", "array[3][1]"]
    alone = classifier.classify(pictures[0])
    assert alone[0].source == "array[0]"
    assert mixed[0].predictions == mixed[2].predictions == mixed[3].predictions
    assert mixed[0].predictions == alone[0].predictions  # PNG is lossless
    assert mixed[1].predictions == classifier.classify(pictures[1])[0].predictions
    batch = classifier.classify(np.stack(pictures[::2]))
    assert [r.source for r in batch] == ["array[0]", "array[1]"]
    assert classifier.classify([]) == []


# --- class names and probabilities ---------------------------------------------------------


def test_probabilities_are_a_sorted_softmax_named_class_n(tiny_release, pictures):
    result = Classifier(tiny_release, top_k=50).classify(pictures[1])[0]
    assert len(result.predictions) == 10  # top_k beyond the class count gives every class
    assert sorted(p.index for p in result.predictions) == list(range(10))
    assert all(p.name == f"class {p.index}" for p in result.predictions)
    assert sum(p.probability for p in result.predictions) == pytest.approx(1.0, abs=1e-12)
    assert (
        Classifier(tiny_release, top_k=3).classify(pictures[1])[0].predictions
        == (result.predictions[:3])
    )


def test_softmax_is_stable_for_large_logits():
    from scipy.special import softmax as reference

    logits = np.random.default_rng(0).normal(0, 5, (3, 20)).astype(np.float32)
    np.testing.assert_allclose(softmax(logits), reference(logits.astype(np.float64), axis=1))
    huge = softmax(np.array([[1000.0, 1000.0, 0.0]], np.float32))
    np.testing.assert_array_equal(huge, [[0.5, 0.5, 0.0]])


@pytest.mark.parametrize(
    "labels, expected",
    [
        ("names.txt", [f"name {i}" for i in range(10)]),
        ([f"listed {i}" for i in range(10)], [f"listed {i}" for i in range(10)]),
    ],
)
def test_manifest_labels_name_the_classes(tiny_release, tmp_path, pictures, labels, expected):
    release = edited_copy(tiny_release, tmp_path / "rel", lambda d: d.update(labels=labels))
    (release / "names.txt").write_text("".join(f"name {i}\n" for i in range(10)))
    result = Classifier(release, top_k=10).classify(pictures[0])[0]
    assert all(p.name == expected[p.index] for p in result.predictions)


@pytest.mark.parametrize(
    "labels, message",
    [
        ("imagenet", r"'labels' gives 1000 names; the model has 10 outputs"),
        ("absent.txt", r"'labels' names 'absent.txt', which is not in"),
        ("../outside.txt", r"'labels' file '\.\./outside\.txt' points outside the release"),
        (["only one"], r"'labels' gives 1 names; the model has 10 outputs"),
        (7, r"'labels' must be \"imagenet\", a list of names or a text file"),
    ],
)
def test_bad_manifest_labels_are_one_line_errors(tiny_release, tmp_path, labels, message):
    release = edited_copy(tiny_release, tmp_path / "rel", lambda d: d.update(labels=labels))
    (tmp_path / "outside.txt").write_text("x\n" * 10)
    from mge_harness.exporters.manifest import load_manifest

    with pytest.raises(HarnessError, match=message):
        class_names(load_manifest(release), 10)


# --- reading images ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bgr() -> np.ndarray:
    from mge_harness.exporters.zoo import calibration_images

    return calibration_images(1, (30, 44), seed=5)[0]


def write(folder: Path, name: str, image: np.ndarray) -> Path:
    import cv2

    path = folder / name
    assert cv2.imwrite(str(path), image)
    return path


def test_grey_bgra_and_16_bit_files_read_as_bgr(tmp_path, bgr):
    import cv2

    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    grey_bgr = np.repeat(grey[:, :, None], 3, axis=2)
    bgra = np.dstack([bgr, np.arange(bgr.shape[1], dtype=np.uint8)[None].repeat(30, 0)])
    wide = (bgr.astype(np.uint16) << 8) + 90  # the high byte is the 8-bit value
    cases = {
        "grey.png": (grey, grey_bgr),
        "bgra.png": (bgra, bgr),
        "16bit.png": (wide, bgr),
        "16bit-grey.png": (grey.astype(np.uint16) << 8, grey_bgr),
    }
    for name, (stored, expected) in cases.items():
        image = read_image(write(tmp_path, name, stored))
        assert image.dtype == np.uint8 and image.shape == bgr.shape, name
        np.testing.assert_array_equal(image, expected, err_msg=name)
    jpeg = read_image(write(tmp_path, "grey.jpg", grey))
    assert jpeg.shape == bgr.shape
    assert (jpeg[:, :, 0] == jpeg[:, :, 1]).all() and (jpeg[:, :, 1] == jpeg[:, :, 2]).all()


def test_grey_bgra_and_16_bit_arrays_convert_like_files(bgr):
    import cv2

    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    np.testing.assert_array_equal(to_bgr8(grey, "g"), np.repeat(grey[:, :, None], 3, axis=2))
    np.testing.assert_array_equal(to_bgr8(grey[:, :, None], "g"), to_bgr8(grey, "g"))
    np.testing.assert_array_equal(to_bgr8(np.dstack([bgr, grey]), "a"), bgr)
    np.testing.assert_array_equal(to_bgr8(bgr.astype(np.uint16) << 8, "w"), bgr)
    flipped = bgr[:, ::-1]  # a negative-stride view comes back contiguous
    assert to_bgr8(flipped, "f").flags.c_contiguous


def test_jpeg_exif_orientation_is_applied_like_cv2_imread(tmp_path, bgr):
    import cv2
    from PIL import Image

    path = tmp_path / "rotated.jpg"
    image = Image.fromarray(np.ascontiguousarray(bgr[:, :, ::-1]))
    exif = image.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    image.save(path, exif=exif.tobytes())
    got = read_image(path)
    assert got.shape == (bgr.shape[1], bgr.shape[0], 3)
    np.testing.assert_array_equal(got, cv2.imread(str(path)))


def test_other_formats_classify_like_the_bgr_image(tiny_release, tmp_path, bgr):
    import cv2

    files = [
        write(tmp_path, "plain.png", bgr),
        write(tmp_path, "bgra.png", cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)),
        write(tmp_path, "16bit.png", bgr.astype(np.uint16) << 8),
    ]
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    classifier = Classifier(tiny_release, top_k=10, batch_size=1)
    results = classifier.classify([*files, grey, write(tmp_path, "grey.png", grey)])
    assert results[0].predictions == results[1].predictions == results[2].predictions
    assert results[3].predictions == results[4].predictions
    assert results[3].predictions == classifier.classify(cv2.merge([grey] * 3))[0].predictions


# --- bad input -----------------------------------------------------------------------------


def bad_input(kind: str, folder: Path):
    if kind == "missing file":
        return folder / "nope.png", r"nope\.png: file does not exist$"
    if kind == "not an image":
        (folder / "text.png").write_text("not pixels")
        return folder / "text.png", r"text\.png: not an image OpenCV can decode$"
    if kind == "empty file":
        (folder / "empty.jpg").write_bytes(b"")
        return folder / "empty.jpg", r"empty\.jpg: empty file; expected an image$"
    if kind == "folder":
        return folder, r": not a file; expected an image file$"
    if kind == "float array":
        image = np.zeros((8, 8, 3), np.float32)
        return image, r"^array\[1\]: dtype float32 is not supported; expected uint8 BGR pixels"
    if kind == "int64 array":
        image = np.zeros((8, 8, 3), np.int64)
        return image, r"^array\[1\]: dtype int64 is not supported; expected uint8"
    if kind == "0x0 array":
        return np.zeros((0, 0, 3), np.uint8), r"^array\[1\]: empty image of shape \(0, 0, 3\)$"
    if kind == "5 channels":
        return np.zeros((4, 4, 5), np.uint8), r"^array\[1\]: shape \(4, 4, 5\) is not an image"
    if kind == "not an image object":
        return [np.zeros((4, 4, 3), np.uint8), 42], r"^images\[1\]: expected an image file path"
    raise AssertionError(kind)


BAD_INPUTS = [
    "missing file",
    "not an image",
    "empty file",
    "folder",
    "float array",
    "int64 array",
    "0x0 array",
    "5 channels",
    "not an image object",
]


@pytest.mark.parametrize("kind", BAD_INPUTS)
def test_bad_images_are_refused_before_anything_runs(tiny_release, tmp_path, pictures, kind):
    image, message = bad_input(kind, tmp_path)
    classifier = Classifier(tiny_release)
    shapes = recorded_batches(classifier)
    # A file that fails to decode is found when its chunk (batch_size images) is read.
    images = image if isinstance(image, list) else [pictures[0], image]
    with pytest.raises(HarnessError, match=message) as err:
        classifier.classify(images)
    assert "\n" not in str(err.value)
    assert shapes == []


@pytest.mark.parametrize(
    "options, message",
    [
        ({"variant": "tiny.nope"}, r"manifest\.json: no variant 'tiny\.nope'; it lists tiny\."),
        ({"device": "gpu"}, r"unknown device config 'gpu'; known configs: cpu"),
        ({"top_k": 0}, r"top_k must be a positive integer, got 0"),
        ({"batch_size": 1.5}, r"batch_size must be a positive integer, got 1\.5"),
    ],
)
def test_bad_options_are_one_line_errors(tiny_release, options, message):
    with pytest.raises(HarnessError, match=message):
        Classifier(tiny_release, **options)


# --- command line --------------------------------------------------------------------------


def cli(capsys, *args) -> tuple[int, str, str]:
    code = run_cli(main, [str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_text_lists_top_k_under_each_file(tiny_release, tmp_path, pictures, capsys):
    paths = [write(tmp_path, f"p{i}.png", image) for i, image in enumerate(pictures[:2])]
    code, out, err = cli(capsys, "--release", tiny_release, "--top-k", 3, *paths)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == 6
    expected = Classifier(tiny_release, top_k=3).classify(paths)
    for path, result, block in zip(paths, expected, (lines[:3], lines[3:]), strict=True):
        assert block[0].startswith(f"{path}: ")
        assert all(line.startswith("  ") and not line.startswith("   ") for line in block[1:])
        for line, p in zip(block, result.predictions, strict=True):
            index, name, probability = re.fullmatch(
                r"(?:.*: |  )(\d+) (class \d+) (\d\.\d{3})", line
            ).groups()
            assert (int(index), name) == (p.index, p.name)
            assert float(probability) == pytest.approx(p.probability, abs=5e-4)
    assert out == format_text(expected) + "\n"


def test_cli_json_is_machine_readable(tiny_release, tmp_path, pictures, capsys):
    path = write(tmp_path, "p.png", pictures[1])
    variant = "tiny.external.cbn-on"
    code, out, err = cli(capsys, "--release", tiny_release, "--variant", variant, "--json", path)
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert document["variant"] == variant and document["device"] == "cpu"
    assert document["release"] == str(tiny_release.resolve())
    expected = Classifier(tiny_release, variant=variant, top_k=1).classify(path)
    assert document["results"] == [r.to_dict() for r in expected]
    assert len(document["results"][0]["predictions"]) == 1


def test_cli_warns_when_an_expected_failure_variant_is_named(
    tiny_release, pictures, tmp_path, capsys
):
    path = write(tmp_path, "p.png", pictures[0])
    code, out, err = cli(
        capsys, "--release", tiny_release, "--variant", "tiny.identity-warp.cbn-on", path
    )
    assert code == 0 and out.startswith(f"{path}: ")
    assert err.startswith("warning: tiny.identity-warp.cbn-on is expected to fail equivalence: ")


@pytest.mark.parametrize(
    "args, message",
    [
        (["{dir}/nope.png"], "nope.png: file does not exist"),
        (["{dir}/text.png"], "text.png: not an image OpenCV can decode"),
        (["--variant", "tiny.nope", "{dir}/p.png"], "no variant 'tiny.nope'"),
        (["--top-k", "0", "{dir}/p.png"], "--top-k must be a positive integer, got 0"),
        (["--device", "gpu", "{dir}/p.png"], "unknown device config 'gpu'"),
    ],
)
def test_cli_bad_input_is_one_error_line(tiny_release, tmp_path, pictures, capsys, args, message):
    write(tmp_path, "p.png", pictures[0])
    (tmp_path / "text.png").write_text("not pixels")
    args = [a.format(dir=tmp_path) for a in args]
    code, out, err = cli(capsys, "--release", tiny_release, *args)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err


def test_cli_error_in_a_subprocess_has_no_traceback_or_chatter(tiny_release, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-m", "exporters.classify", "--release", str(tiny_release),
         str(tmp_path / "nope.png")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == f"error: {tmp_path / 'nope.png'}: file does not exist\n"
