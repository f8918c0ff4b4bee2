"""``mge-harness`` from a checkout on PYTHONPATH, the plugin's single registration, the cache
folder and the recorded version (the installed wheel: ``tests/test_install.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mge_harness.exporters import release, version
from tests.hardening_models import child_env

ROOT = Path(__file__).resolve().parent.parent


def harness(*args, cwd):
    env = child_env()
    return subprocess.run(
        [sys.executable, "-m", "mge_harness", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=600,
    )  # fmt: skip


@pytest.fixture(scope="module")
def tiny_release() -> Path:
    return release.builtin_release("tiny", progress=None)


def test_help_lists_every_command(tmp_path):
    result = harness("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("export", "gate", "bench", "report", "classify", "tune", "run"):
        assert f"\n  {command} " in result.stdout


def test_version_is_the_projects(tmp_path):
    result = harness("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"mge-harness {version.harness_version()}"
    assert version.harness_version() == version._checkout_version() != "unknown"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["nope"], "unknown command 'nope'"),
        (["gate"], "gate: expected the release folder DIR first"),
        (["bench", "-q"], "bench: expected the release folder DIR first, got -q"),
        (["export", "--model", "nope", "--out", "x"], "nope"),
    ],
)
def test_mistakes_are_one_line(tmp_path, args, fragment):
    result = harness(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines


def test_gate_runs_on_a_release_from_any_folder(tmp_path, tiny_release):
    result = harness("gate", tiny_release, "-q", "-k", "test_reference", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads((tmp_path / "results" / "gate.json").read_text())
    assert document["harness_version"] == version.harness_version()
    assert document["status"] == "partial"


def test_plugin_loads_once_beside_the_checkouts_conftest():
    """Named twice (-p and the root conftest), the plugin registers once: no 'option --release
    already added'."""
    env = child_env()
    command = [sys.executable, "-m", "pytest", "-p", "mge_harness.pytest_plugin", "--help"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("--release=DIR") == 1 and "--gate-json" in result.stdout


@pytest.mark.parametrize("ci", [None, "true"])
def test_profiles_are_the_harnesss_under_a_ci_runner(ci):
    """Under a CI runner Hypothesis loads its own "ci" profile (100 examples, no database) at
    import; the plugin swaps in its own "ci" (20 examples), and "dev" keeps its database."""
    code = (
        "import mge_harness.pytest_plugin; from hypothesis import settings as s; "
        "print(s.get_current_profile_name(), s.default.max_examples, "
        "s.get_profile('dev').database is not None)"
    )
    from hypothesis import _settings  # the variables by which Hypothesis detects a CI runner

    markers = set(getattr(_settings, "_CI_VARS", {"CI": None}))
    env = {k: v for k, v in child_env().items() if k not in markers}
    if ci:
        env["CI"] = ci
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    expected = "ci 20 True" if ci else "dev 10 True"
    assert result.stdout.split()[-3:] == expected.split()


def test_cache_root_is_the_checkouts_in_a_checkout(monkeypatch):
    monkeypatch.delenv("MGE_HARNESS_CACHE", raising=False)
    assert release.cache_root() == ROOT / ".harness-cache"
    monkeypatch.setenv("MGE_HARNESS_CACHE", "/some/where")
    assert release.cache_root() == Path("/some/where")


def test_cache_root_is_the_users_when_installed(monkeypatch, tmp_path):
    """Not a checkout (no pyproject.toml naming this project beside the packages)."""
    monkeypatch.setattr(version, "_PYPROJECT", tmp_path / "pyproject.toml")
    version._checkout_version.cache_clear()
    try:
        monkeypatch.delenv("MGE_HARNESS_CACHE", raising=False)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert release.cache_root() == tmp_path / "xdg" / "mge-harness"
        monkeypatch.delenv("XDG_CACHE_HOME")
        monkeypatch.setenv("HOME", str(tmp_path))
        assert release.cache_root() == tmp_path / ".cache" / "mge-harness"
        (tmp_path / "pyproject.toml").write_text('[project]\nname = "other"\nversion = "9"\n')
        version._checkout_version.cache_clear()
        assert version.source_checkout() is None
    finally:
        version._checkout_version.cache_clear()


def test_a_missing_extra_is_named(monkeypatch):
    from mge_harness.exporters.errors import HarnessError
    from mge_harness import cli
    from mge_harness.reports import errors

    def find_spec(name):
        return None if name in ("pandas", "pytest_benchmark") else object()

    monkeypatch.setattr(cli, "find_spec", find_spec)
    with pytest.raises(HarnessError, match=r"pytest_benchmark missing: .*\[bench\]'"):
        cli._require("bench")
    with pytest.raises(HarnessError, match=r"pandas missing: .*\[reports\]'"):
        cli._require("reports")
    monkeypatch.setattr("importlib.util.find_spec", find_spec)
    with pytest.raises(errors.ReportError, match=r"reports need pandas: .*\[reports\]'"):
        errors.require_reports_extra()


def test_benchmarks_without_pytest_benchmark_name_the_extra(tiny_release):
    env = child_env()
    command = [sys.executable, "-m", "pytest", "bench", "--release", str(tiny_release),
               "-p", "no:benchmark", "-p", "no:cacheprovider", "-q"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "ERROR: the benchmarks need pytest-benchmark: pip install " in result.stderr
    assert "[bench]" in result.stderr and "Traceback" not in result.stderr


def test_run_exports_gates_benchmarks_and_reports(tmp_path):
    """As tox -e bench does; arguments after -- go to the benchmarks (one quick case here)."""
    result = harness("run", "--model", "tiny", "--out", "out", "--", "--devices", "cpu",
                     "--batch-sizes", "1", "-k", "tiny.fused.cbn-on-b1-cpu-model", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = tmp_path / "out"
    assert json.loads((out / "gate.json").read_text())["passed"] is True
    assert (out / "release" / "manifest.json").is_file() and (out / "gate-junit.xml").is_file()
    report = (out / "report.md").read_text()
    assert f"harness `{version.harness_version()}`" in report
    (saved,) = (tmp_path / ".benchmarks").glob("*/0001_*.json")
    assert json.loads(saved.read_text())["machine_info"]["harness_version"]


def test_run_mistakes_are_one_line(tmp_path):
    result = harness("run", "--out", "x", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: run: the following arguments are required: --model (see mge-harness run --help)"
    )
