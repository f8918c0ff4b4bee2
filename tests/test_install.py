"""The built wheel, installed into a fresh venv, works from a folder outside the repository.

How the venv gets MegEngine without downloading anything: it is created from this interpreter
with ``--without-pip`` and a ``.pth`` file naming this environment's site-packages, so
MegEngine, pytest, this environment's pip and the rest are importable in it, behind the venv's
own site-packages. (``--system-site-packages`` would not do: it exposes the base interpreter's
site-packages, not a venv's.) A plain path line does not run the ``.pth`` files of that folder,
so an editable install of the checkout there stays inactive; the wheel is installed with
``pip install --no-deps``. The wheel is built from a copy of the checkout's files, since
building in place writes ``build/`` and ``*.egg-info`` into it.

The children run in an empty folder, without PYTHONPATH and with the user cache folder in the
test's tmp, and must not touch the repository. About 20 s (build, venv, export and two gates
of the tiny model), so not marked slow.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from mge_harness.exporters.version import harness_version

ROOT = Path(__file__).resolve().parent.parent


def _sh(command, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, timeout=600, **kwargs
    )


def _checkout_files() -> list[str]:
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the checkout's files are listed with git ls-files")
    listed = _sh(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT)
    if listed.returncode:
        pytest.skip(f"not a git checkout: {listed.stderr.strip()}")
    return [name for name in listed.stdout.splitlines() if (ROOT / name).is_file()]


def _repo_state() -> set[str]:
    """The repository's untracked files, ignored ones included (``results/``, ``.benchmarks/``,
    caches): what a run rooted in the repository would leave behind. Not its bytecode, nor
    Hypothesis's example database, which any concurrent test run changes; editing tracked files
    meanwhile does not count either. (Under pytest-xdist another worker's new files in
    ``results/`` would show here too.)"""
    command = ["git", "status", "--porcelain", "--untracked-files=all", "--ignored"]
    lines = _sh(command, cwd=ROOT).stdout.splitlines()
    churn = ("__pycache__", ".hypothesis/")
    return {
        line[3:]
        for line in lines
        if line[:2] in ("??", "!!") and not any(part in line for part in churn)
    }


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv bin folder, child environment, empty working folder) with the wheel installed."""
    pytest.importorskip("wheel", reason="setuptools < 70 builds wheels with the wheel package")
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "source"
    for name in _checkout_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    built = _sh([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp / "dist", source])
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp / "dist").glob("mge_release_harness-*.whl")
    venv = tmp / "venv"
    created = _sh([sys.executable, "-m", "venv", "--without-pip", venv])
    assert created.returncode == 0, created.stderr
    python = venv / "bin" / "python"
    purelib = _sh([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    base = sysconfig.get_paths()["purelib"]
    (Path(purelib.stdout.strip()) / "_harness_base_site.pth").write_text(f"{base}\n")
    # --ignore-installed: this environment's own install of the harness (editable, or tox's) is
    # visible through the .pth line and would make pip skip the wheel as "already satisfied".
    install = [python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed"]
    done = _sh([*install, wheel])
    assert done.returncode == 0, done.stderr
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "MGE_HARNESS_CACHE") and not key.startswith("PYTEST_")
    }  # PYTEST_XDIST_* would make a child pytest believe it is a worker
    env["XDG_CACHE_HOME"] = str(tmp / "user-cache")
    work = tmp / "work"
    work.mkdir()
    return venv / "bin", env, work


def test_installed_modules_come_from_the_venv(installed):
    bin_dir, env, work = installed
    code = (
        "import exporters, equivalence, mge_harness; from exporters.release import cache_root; "
        "print(exporters.__file__, equivalence.__file__, mge_harness.__file__, cache_root())"
    )
    result = _sh([bin_dir / "python", "-c", code], cwd=work, env=env)
    assert result.returncode == 0, result.stderr
    *files, cache = result.stdout.split()
    assert all(Path(f).is_relative_to(bin_dir.parent) for f in files), files
    assert Path(cache) == Path(env["XDG_CACHE_HOME"]) / "mge-harness"
    version = _sh([bin_dir / "mge-harness", "--version"], cwd=work, env=env)
    assert version.stdout.strip() == f"mge-harness {harness_version()}"


def test_export_and_gate_from_an_empty_folder(installed):
    bin_dir, env, work = installed
    before = _repo_state()
    release = work / "release"
    exported = _sh([bin_dir / "mge-harness", "export", "--model", "tiny", "--out", release,
                    "--quiet"], cwd=work, env=env)  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    gate = _sh([bin_dir / "mge-harness", "gate", release, "-q"], cwd=work, env=env)
    assert gate.returncode == 0, gate.stdout + gate.stderr
    assert f"gate PASSED: {work / 'results' / 'gate.json'}" in gate.stdout
    document = json.loads((work / "results" / "gate.json").read_text())
    assert document["passed"] is True and document["harness_version"] == harness_version()

    (work / "results" / "gate.json").unlink()
    # --hypothesis-profile=dev: the profile with an example database, named, since under a CI
    # runner (CI=true) Hypothesis starts from its own "ci" profile, which has none.
    command = [bin_dir / "python", "-m", "pytest", "--pyargs", "equivalence", "--release",
               release, "-p", "no:cacheprovider", "--hypothesis-profile=dev"]  # fmt: skip
    pyargs = _sh(command, cwd=work, env=env)  # the options come from the entry point
    assert pyargs.returncode == 0, pyargs.stdout + pyargs.stderr
    assert "gate PASSED" in pyargs.stdout
    assert f"rootdir: {ROOT}" not in pyargs.stdout and "conftest" not in pyargs.stdout
    assert (work / "results" / "gate.json").is_file() and (work / ".hypothesis").is_dir()
    assert _repo_state() == before
