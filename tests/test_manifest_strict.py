"""Strict inputs: unknown manifest keys and format versions, the manifest's JSON Schema, and the
exporter options a built-in model would ignore."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mge_harness.exporters.errors import HarnessError, run_cli
from mge_harness.exporters.manifest import FORMAT_VERSION, load_manifest
from mge_harness.exporters.schema import SCHEMA, known_keys, load_schema

jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def validator():
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _schema_errors(validator, data: dict) -> list[str]:
    return [error.message for error in validator.iter_errors(data)]


def _export_user(out: Path, factory: str) -> Path:
    from mge_harness.exporters.export import export_release
    from mge_harness.exporters.preprocess import PreprocessSpec
    from mge_harness.exporters.variants import select_variants
    from mge_harness.exporters.zoo import user_spec

    spec = user_spec(f"tests.userzoo:{factory}", PreprocessSpec(size=(32, 32)))
    export_release(spec, out, select_variants(spec.name, "external,fused"), progress=None)
    return out


@pytest.fixture(scope="module")
def tiny_release() -> Path:
    from mge_harness.exporters.release import builtin_release

    return builtin_release("tiny", progress=None)


@pytest.fixture(scope="module")
def user_releases(tmp_path_factory) -> dict[str, Path]:
    """Releases of user factories: one tensor out (small_net) and a tuple (tuple_net)."""
    folder = tmp_path_factory.mktemp("user")
    return {name: _export_user(folder / name, name) for name in ("small_net", "tuple_net")}


@pytest.fixture(scope="module")
def small_release(user_releases) -> Path:
    return user_releases["small_net"]


def _manifest(release: Path) -> dict:
    return json.loads((release / "manifest.json").read_text())


def _edited(release: Path, folder: Path, edit) -> Path:
    """A copy of ``release`` whose manifest went through ``edit(dict)``."""
    shutil.copytree(release, folder)
    data = _manifest(folder)
    edit(data)
    (folder / "manifest.json").write_text(json.dumps(data))
    return folder


# --- the schema against what the exporter writes and the loader reads ----------------------


@pytest.mark.parametrize("release", ["tiny", "small_net", "tuple_net"])
def test_every_manifest_the_exporter_writes_matches_the_schema(
    validator, tiny_release, user_releases, release
):
    folder = tiny_release if release == "tiny" else user_releases[release]
    data = _manifest(folder)
    assert _schema_errors(validator, data) == []
    load_manifest(folder)


def test_the_exporter_writes_the_provenance_and_top_level_keys_the_schema_lists(
    tiny_release, small_release
):
    tiny, small = _manifest(tiny_release), _manifest(small_release)
    assert {"format_version", "builtin", "fingerprint", "outputs"} <= set(tiny)
    assert {"source", "outputs"} <= set(small)
    provenance = {"sha256", "cache_key", "megengine_version", "dump_options", "op_histogram",
                  "nr_opr", "tot_bytes"}  # fmt: skip
    for entry in tiny["variants"] + small["variants"]:
        assert provenance <= set(entry) <= set(known_keys("variant"))


def test_the_schema_enumerates_what_the_code_accepts():
    from mge_harness.exporters.outputs import KINDS
    from mge_harness.exporters.preprocess import COLORS, INTERPOLATIONS
    from mge_harness.exporters.variants import PREPROCESSINGS

    schema = load_schema()
    defs = schema["$defs"]
    assert schema["properties"]["format_version"]["const"] == FORMAT_VERSION
    assert tuple(defs["variant"]["properties"]["preprocessing"]["enum"]) == PREPROCESSINGS
    assert tuple(defs["output"]["properties"]["kind"]["enum"]) == KINDS
    assert tuple(defs["preprocess"]["properties"]["color"]["enum"]) == COLORS
    assert tuple(defs["preprocess"]["properties"]["interpolation"]["enum"]) == INTERPOLATIONS
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_readme_example_matches_the_schema_and_loads(validator, tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## The manifest format", 1)[1]
    example = json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))
    assert _schema_errors(validator, example) == []
    (tmp_path / "manifest.json").write_text(json.dumps(example))
    load_manifest(tmp_path, verify=False)


def test_the_schema_ships_with_the_package():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert SCHEMA.name in pyproject and SCHEMA.parent.name == "exporters"


# --- unknown keys ----------------------------------------------------------------------------


def _set(path: tuple, key: str, value=None):
    """An edit of the object at ``path``: renames its key ``value`` to ``key`` when it has one,
    else sets ``key`` to ``value``."""

    def edit(data):
        node = data
        for step in path:
            node = node[step]
        node[key] = node.pop(value) if isinstance(value, str) and value in node else value

    return edit


TYPOS = [
    # (where, path to the object, the typo, the key it renames or a value, nearest known key)
    ("manifest.json", (), "format_versoin", "format_version", "format_version"),
    ("manifest.json", (), "label", ["a", "b"], "labels"),
    ("variants[1]", ("variants", 1), "expected_falure", "crops", "expected_failure"),
    ("variants[0]", ("variants", 0), "sha265", "sha256", "sha256"),
    ("variants[0].input", ("variants", 0, "input"), "dtyp", "dtype", "dtype"),
    ("preprocess", ("preprocess",), "intrpolation", "interpolation", "interpolation"),
    ("source", ("source",), "weight", "weights", "weights"),
    ("source.weights", ("source", "weights"), "sha", "sha256", "sha256"),
    ("outputs[0]", ("outputs", 0), "knd", "kind", "kind"),
]


@pytest.mark.parametrize(
    "where, path, typo, value, nearest", TYPOS, ids=[f"{t[0]}:{t[2]}" for t in TYPOS]
)
def test_a_typo_key_is_refused_by_the_loader_and_the_schema(
    validator, small_release, tmp_path, where, path, typo, value, nearest
):
    folder = _edited(small_release, tmp_path / "rel", _set(path, typo, value))
    data = _manifest(folder)
    assert any(repr(typo) in message for message in _schema_errors(validator, data))
    with pytest.raises(HarnessError) as err:
        load_manifest(folder)
    head = "manifest.json has" if where == "manifest.json" else f"manifest.json: {where} has"
    assert str(err.value).endswith(f"{head} unknown key {typo!r}; did you mean {nearest!r}?"), (
        err.value
    )


def test_an_unknown_key_without_a_near_one_lists_the_known_keys(small_release, tmp_path):
    folder = _edited(small_release, tmp_path / "rel", _set(("variants", 0), "zzz", 1))
    with pytest.raises(HarnessError, match=r"variants\[0\] has unknown key 'zzz'; known keys: id,"):
        load_manifest(folder)


def test_an_unknown_key_is_reported_before_the_missing_one_it_misspells(small_release, tmp_path):
    folder = _edited(small_release, tmp_path / "rel", _set((), "modle", "model"))
    with pytest.raises(HarnessError, match=r"unknown key 'modle'; did you mean 'model'\?"):
        load_manifest(folder)


def test_a_schema_key_for_editors_is_accepted(validator, small_release, tmp_path):
    edit = _set((), "$schema", "https://example.org/manifest.schema.json")
    folder = _edited(small_release, tmp_path / "rel", edit)
    assert _schema_errors(validator, _manifest(folder)) == []
    load_manifest(folder)


@pytest.mark.parametrize(
    "path, key", [((), "source"), ((), "outputs"), ((), "labels"), (("variants", 0), "input")]
)
def test_null_reads_as_absent_for_both(validator, small_release, tmp_path, path, key):
    folder = _edited(small_release, tmp_path / "rel", _set(path, key, None))
    assert _schema_errors(validator, _manifest(folder)) == []
    load_manifest(folder, verify=False)


# --- format_version ------------------------------------------------------------------------


@pytest.mark.parametrize("version", [2, 0, "1", True, None])
def test_an_unknown_format_version_is_refused(validator, small_release, tmp_path, version):
    folder = _edited(small_release, tmp_path / "rel", _set((), "format_version", version))
    assert _schema_errors(validator, _manifest(folder))
    with pytest.raises(HarnessError, match=rf"format_version {re.escape(repr(version))} is not"):
        load_manifest(folder)


def test_a_missing_format_version_reads_as_the_current_one(validator, small_release, tmp_path):
    folder = _edited(small_release, tmp_path / "rel", lambda data: data.pop("format_version"))
    assert _schema_errors(validator, _manifest(folder)) == []
    load_manifest(folder)


def test_a_weights_sha256_must_be_hex(validator, small_release, tmp_path):
    folder = _edited(
        small_release, tmp_path / "rel", _set(("source", "weights"), "sha256", "z" * 64)
    )
    assert _schema_errors(validator, _manifest(folder))
    with pytest.raises(HarnessError, match="must be 64 hex digits"):
        load_manifest(folder)


# --- python -m exporters: options a built-in model would ignore ------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--size", "16x16"], "--size: built-in model 'tiny' has its own input size (32x32)"),
        (["--mean", "1,2,3"], "--mean: built-in model 'tiny' has its own normalisation (color bgr"),
        (["--std", "1,2,3"], "--std: built-in model 'tiny' has its own normalisation"),
        (["--color", "bgr"], "--color: built-in model 'tiny' has its own normalisation"),
        (["--name", "mine"], "--name: built-in model 'tiny' names its variants tiny.*"),
        (["--weights", "w.npz"], "--weights: built-in model 'tiny' has its own weights"),
    ],
    ids=["size", "mean", "std", "color", "name", "weights"],
)
def test_options_a_builtin_model_ignores_are_refused(tmp_path, capsys, args, message):
    from mge_harness.exporters.__main__ import main

    out = tmp_path / "rel"
    assert run_cli(main, ["--model", "tiny", "--out", str(out), *args]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {message}") and error.count("\n") == 1, error
    assert "is for your own model (--model package.module:factory)" in error
    assert not out.exists()


@pytest.mark.parametrize(
    "args", [[], ["--mean", "1,2,3"], ["--std", "1,2,3"]], ids=["neither", "mean-only", "std-only"]
)
def test_rgb_without_mean_and_std_is_refused(tmp_path, capsys, args):
    from mge_harness.exporters.__main__ import main

    argv = ["--model", "tests.userzoo:small_net", "--out", str(tmp_path / "rel"), "--color", "rgb"]
    assert run_cli(main, [*argv, *args]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: --color rgb: give --mean and --std too, in RGB order; the "
                            "defaults are ImageNet statistics in BGR order")  # fmt: skip
    assert not (tmp_path / "rel").exists()


def test_a_refused_option_is_one_line_and_exit_2_from_the_command_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "exporters", "--model", "tiny", "--size", "16x16", "--out",
         str(tmp_path / "rel")],
        capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: --size: built-in model 'tiny' has its own input size")
