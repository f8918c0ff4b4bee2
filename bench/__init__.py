"""MegEngine Lite latency benchmarks (pytest-benchmark suites); see ``bench.plugin``."""
