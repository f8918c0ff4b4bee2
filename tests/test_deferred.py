"""MegEngine's unused download stack stays unloaded until used (loading and running a model
included), and works when it is; a refused release folder is refused before MegEngine is
imported."""

from __future__ import annotations

import json

from tests.hardening_models import USAGE_ERROR, run

#: A fresh process: MegEngine imported the harness's way, then the deferred packages used.
_CHILD = """
import json, sys
from pathlib import Path

from mge_harness.exporters.quiet import probe_cuda_quietly

probe_cuda_quietly()
import megengine.utils.http_download as download

from mge_harness.exporters.manifest import load_manifest
from mge_harness.exporters.runners import lite_runner

with lite_runner(load_manifest(sys.argv[2]).variants[0]) as runner:  # a model loaded and run
    runner.run()
facts = {"loaded_at_start": [m for m in ("boto3", "paramiko") if m in sys.modules]}
facts["stand_in"] = type(sys.modules["megfile"]).__name__ == "_StandIn"
facts["version"] = sys.modules["megfile"].__version__  # a dunder name too loads the package
size = download.smart_getsize(sys.argv[1])  # http_download's own megfile import, called
facts["size"] = size
facts["megfile_real"] = type(sys.modules["megfile"]).__name__ == "module"
import megfile.fs

import requests

facts["fs_exists"] = megfile.fs.fs_exists(sys.argv[1])
facts["requests_version"] = requests.__version__
print(json.dumps(facts))
"""


def test_megengine_imports_without_its_download_stack_which_loads_when_used(tmp_path):
    from mge_harness.exporters.release import builtin_release

    data = tmp_path / "data.bin"
    data.write_bytes(b"x" * 1234)
    result = run("-c", _CHILD, data, builtin_release("tiny", progress=None))
    assert result.returncode == 0, result.stderr[-3000:]
    facts = json.loads(result.stdout)
    assert facts["loaded_at_start"] == [] and facts["stand_in"]
    assert facts["size"] == 1234 and facts["megfile_real"] and facts["fs_exists"]
    assert facts["requests_version"].count(".") >= 1 and facts["version"].count(".") >= 1


def test_a_process_that_imported_megfile_first_keeps_it():
    code = (
        "import megfile, requests, sys\n"
        "from mge_harness.exporters.quiet import probe_cuda_quietly\n"
        "probe_cuda_quietly()\n"
        "print(sys.modules['megfile'] is megfile and sys.modules['requests'] is requests"
        " and type(requests).__name__ == 'module')"
    )
    result = run("-c", code)
    assert (result.returncode, result.stdout.strip()) == (0, "True"), result.stderr[-3000:]


def test_a_missing_release_folder_is_refused_before_megengine_is_imported(tmp_path):
    code = (
        "import sys, pytest\n"
        f"rc = pytest.main(['equivalence/', '--release', {str(tmp_path / 'nothing')!r},"
        " '-p', 'no:cacheprovider', '-q', '--gate-json', "
        f"{str(tmp_path / 'gate.json')!r}])\n"
        "print(int(rc), 'megengine' in sys.modules)"
    )
    result = run("-c", code)
    assert result.stdout.split()[-2:] == [str(USAGE_ERROR), "False"], result.stderr[-3000:]
    assert "release folder does not exist" in result.stderr
