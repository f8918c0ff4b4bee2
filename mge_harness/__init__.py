"""The harness's front door: the ``mge-harness`` command and the pytest plugin.

``mge_harness.pytest_plugin`` is what an installed harness adds to every pytest run (by its
``pytest11`` entry point); ``mge_harness.cli`` is the ``mge-harness`` command. Both sit above
``exporters``, ``equivalence``, ``bench`` and ``reports`` and only import them when used.
"""
