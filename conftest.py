"""Root pytest configuration of this repository.

Everything a harness run needs (``--release``, ``--model``, ``--probe-timeout``, the Hypothesis
profiles, the ``manifest``/``release_dir`` fixtures, the gate and benchmark plugins) is the
installable plugin ``mge_harness.pytest_plugin``. Installed, its ``pytest11`` entry point has
registered it under that same name before this file is read, and pytest skips the name here;
run from a checkout that is not installed (``PYTHONPATH=repo``), this line loads it.
"""

pytest_plugins = ["mge_harness.pytest_plugin"]


def pytest_configure(config):
    """This repository's own tests import MegEngine directly: its CUDA probe chatter is
    triggered here with stderr silenced. A harness run (``--release`` given) leaves it to the
    plugin, which does it once the release folder has been read."""
    if config.getoption("release", None):
        return
    from mge_harness.exporters.quiet import probe_cuda_quietly

    probe_cuda_quietly()
