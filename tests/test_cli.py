"""``python -m exporters``: progress, user factories, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mge_harness.exporters.manifest import load_manifest

ROOT = Path(__file__).resolve().parent.parent


def run_exporters(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "exporters", *map(str, args)],
        capture_output=True, text=True, cwd=cwd or ROOT, env=env, timeout=300,
    )  # fmt: skip


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_exports_builtin_model_with_progress(tmp_path):
    result = run_exporters("--model", "tiny", "--out", tmp_path / "rel")
    assert result.returncode == 0, result.stderr
    assert "[5/5] tiny.identity-warp.cbn-on: exported" in result.stderr
    assert len(list((tmp_path / "rel").glob("*.mge"))) == 5


def test_exports_a_user_factory_with_weights(tmp_path):
    sys.path.insert(0, str(ROOT))
    from tests.userzoo import small_net

    state = {k: np.full(v.shape, 0.5, v.dtype) for k, v in small_net().state_dict().items()}
    weights = tmp_path / "w.pkl"
    weights.write_bytes(pickle.dumps(state))
    result = run_exporters(
        "--model", "tests.userzoo:small_net", "--weights", weights, "--out", tmp_path / "rel",
        "--size", "16x20", "--color", "rgb", "--mean", "127,127,127", "--std", "128,128,128",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    manifest = load_manifest(tmp_path / "rel")
    assert manifest.model == "small_net" and manifest.preprocess.size == (16, 20)
    assert manifest.preprocess.color == "rgb" and manifest.preprocess.mean == (127.0,) * 3
    assert manifest.variants[0].input.shape == (None, 3, 16, 20)


def make_weights(tmp_path, kind):
    path = tmp_path / f"{kind}.pkl"
    if kind == "missing":
        return tmp_path / "nope.pkl"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "mismatched":
        path.write_bytes(pickle.dumps({"conv.weight": np.zeros((1, 1), np.float32)}))
    elif kind == "wrong-shape":
        sys.path.insert(0, str(ROOT))
        from tests.userzoo import small_net

        state = small_net().state_dict()
        state["fc.weight"] = np.zeros((7, 7), np.float32)
        path.write_bytes(pickle.dumps(state))
    elif kind == "hostile":
        marker = tmp_path / "pwned"

        class Payload:
            def __reduce__(self):
                return (os.system, (f"touch {marker}",))

        path.write_bytes(pickle.dumps({"x": Payload()}))
    return path


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--model", "resnet99"], ["unknown model 'resnet99'", "resnet18, tiny"]),
        (["--model", "tests.userzoo:broken"], ["the factory failed", "CUDA out of memory"]),
        (["--model", "tests.userzoo:not_a_module"], ["returned int", "megengine.module.Module"]),
        (["--model", "tests.userzoo:missing"], ["has no callable 'missing'"]),
        (["--model", "no_such_pkg.mod:f"], ["cannot import 'no_such_pkg.mod'"]),
        (["--model", "tiny", "--variants", "crop"], ["unknown preprocessing 'crop'"]),
        (["--model", "tests.userzoo:small_net", "--size", "abc"], ["--size 'abc'"]),
        (["--model", "tests.userzoo:small_net", "--std", "1,0,1"], ["std must be positive"]),
    ],
    ids=["unknown-model", "factory-fails", "not-a-module", "no-attribute", "no-module",
         "bad-variants", "bad-size", "zero-std"],
)  # fmt: skip
def test_bad_model_options_are_one_line_errors(tmp_path, args, fragments):
    result = run_exporters(*args, "--out", tmp_path / "rel")
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "rel" / "manifest.json").exists()


@pytest.mark.parametrize(
    "kind, fragment",
    [
        ("missing", "cannot read weights"),
        ("empty", "weights file is empty"),
        ("mismatched", "weights do not match the model: missing"),
        ("wrong-shape", "weight 'fc.weight' has shape (7, 7), the model expects (5, 4)"),
        ("hostile", "refused to unpickle 'posix.system'"),
    ],
)
def test_bad_weights_are_one_line_errors(tmp_path, kind, fragment):
    weights = make_weights(tmp_path, kind)
    result = run_exporters(
        "--model", "tests.userzoo:small_net", "--weights", weights, "--out", tmp_path / "rel"
    )
    assert_one_line_error(result, str(weights.name), fragment)
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path / "rel" / "manifest.json").exists()


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run_exporters("--model", "tiny", "--out", blocker / "rel")
    assert_one_line_error(result, "cannot create the output folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_read_only_output_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    assert_one_line_error(run_exporters("--model", "tiny", "--out", folder), "not writable")


def test_weights_for_a_builtin_model_are_refused(tmp_path):
    result = run_exporters("--model", "tiny", "--weights", "x.npz", "--out", tmp_path)
    assert_one_line_error(result, "has its own weights")


def test_manifest_written_is_valid_json_with_documented_keys(tmp_path):
    assert run_exporters("--model", "tiny", "--out", tmp_path, "--quiet").returncode == 0
    data = json.loads((tmp_path / "manifest.json").read_text())
    assert set(data["preprocess"]) == {"size", "mean", "std", "color", "interpolation"}
    entry = data["variants"][0]
    for key in ("id", "file", "preprocessing", "fuse_conv_bias_nonlinearity", "sha256",
                "megengine_version", "dump_options", "op_histogram", "cache_key", "input"):  # fmt: skip
        assert key in entry
