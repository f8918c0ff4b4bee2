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


#: Packages the core (export, gate, classify) must not import: optional extras, or gone.
NOT_CORE = ("skimage", "matplotlib", "pandas", "scipy")


def _without_extras(env: dict, tmp: Path) -> dict:
    """``env`` with packages in ``NOT_CORE`` made unimportable (a folder of stubs that raise
    ImportError, first on PYTHONPATH), as after ``pip install`` of the core alone."""
    for name in NOT_CORE:
        stub = tmp / "not-core" / name / "__init__.py"
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text(f"raise ImportError('{name} is not a core dependency')\n")
    return {**env, "PYTHONPATH": str(tmp / "not-core")}


def _chelsea():
    from mge_harness.exporters.samples import sample_photo

    return sample_photo("chelsea")


def test_the_core_requires_no_extra(installed):
    """The installed wheel's metadata: scikit-image, matplotlib, pandas, scipy and the
    EfficientNet weights are requirements of extras only (``; extra == ...``), never of the core."""
    bin_dir, env, work = installed
    code = (
        "import json; from importlib.metadata import distribution; "
        "print(json.dumps(distribution('mge-release-harness').requires))"
    )
    result = _sh([bin_dir / "python", "-c", code], cwd=work, env=env)
    assert result.returncode == 0, result.stderr
    core = [r for r in json.loads(result.stdout) if "extra ==" not in r]
    optional = ("scikit-image", "matplotlib", "pandas", "scipy", "efficientnet")
    assert core and not [r for r in core if r.startswith(optional)], core


def test_installed_modules_come_from_the_venv(installed):
    bin_dir, env, work = installed
    code = (
        "import mge_harness; from mge_harness import exporters, equivalence, bench, reports; "
        "from mge_harness.exporters.release import cache_root; "
        "print(exporters.__file__, equivalence.__file__, mge_harness.__file__, cache_root())"
    )
    result = _sh([bin_dir / "python", "-c", code], cwd=work, env=env)
    assert result.returncode == 0, result.stderr
    *files, cache = result.stdout.split()
    assert all(Path(f).is_relative_to(bin_dir.parent) for f in files), files
    # The one installed top-level name is mge_harness: a user's own exporters/ or reports/
    # folder is theirs (the base environment's editable install is not active in the venv).
    for name in ("exporters", "equivalence", "bench", "reports"):
        probe = f"import importlib.util as u; print(u.find_spec({name!r}))"
        found = _sh([bin_dir / "python", "-c", probe], cwd=work, env=env)
        assert found.stdout.strip() == "None", (name, found.stdout, found.stderr)
    assert Path(cache) == Path(env["XDG_CACHE_HOME"]) / "mge-harness"
    version = _sh([bin_dir / "mge-harness", "--version"], cwd=work, env=env)
    assert version.stdout.strip() == f"mge-harness {harness_version()}"


def test_export_and_gate_from_an_empty_folder(installed, tmp_path):
    """The core alone: the packages of extras cannot be imported (``_without_extras``), and the
    export, the classifier and both forms of the gate (its photo check included) still work."""
    bin_dir, env, work = installed
    env = _without_extras(env, tmp_path)
    before = _repo_state()
    release = work / "release"
    exported = _sh([bin_dir / "mge-harness", "export", "--model", "tiny", "--out", release,
                    "--quiet"], cwd=work, env=env)  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    import cv2

    photo = tmp_path / "chelsea.png"
    cv2.imwrite(str(photo), cv2.resize(_chelsea(), (96, 64)))
    classify = [
        bin_dir / "mge-harness",
        "classify",
        "--release",
        release,
        "--json",
        "--top-k",
        "5",
        photo,
    ]
    classified = _sh(classify, cwd=work, env=env)
    assert classified.returncode == 0, classified.stderr
    assert len(json.loads(classified.stdout)["results"][0]["predictions"]) == 5
    gate = _sh([bin_dir / "mge-harness", "gate", release, "-q"], cwd=work, env=env)
    assert gate.returncode == 0, gate.stdout + gate.stderr
    assert f"gate PASSED: {work / 'results' / 'gate.json'}" in gate.stdout
    document = json.loads((work / "results" / "gate.json").read_text())
    assert document["passed"] is True and document["harness_version"] == harness_version()

    (work / "results" / "gate.json").unlink()
    # --hypothesis-profile=dev: the profile with an example database, named, since under a CI
    # runner (CI=true) Hypothesis starts from its own "ci" profile, which has none.
    command = [bin_dir / "python", "-m", "pytest", "--pyargs", "mge_harness.equivalence",
               "--release",
               release, "-p", "no:cacheprovider", "--hypothesis-profile=dev"]  # fmt: skip
    pyargs = _sh(command, cwd=work, env=env)  # the options come from the entry point
    assert pyargs.returncode == 0, pyargs.stdout + pyargs.stderr
    assert "gate PASSED" in pyargs.stdout
    assert f"rootdir: {ROOT}" not in pyargs.stdout and "conftest" not in pyargs.stdout
    assert (work / "results" / "gate.json").is_file() and (work / ".hypothesis").is_dir()
    assert _repo_state() == before
