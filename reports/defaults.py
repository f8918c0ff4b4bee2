"""Defaults shared by the CLI and the API; constants only, so ``--help`` imports nothing heavy."""

from pathlib import Path

STORAGE = Path(".benchmarks")
"""pytest-benchmark's default storage folder: one subfolder per machine id."""

GATE = Path("results/gate.json")
"""Where the equivalence gate writes its result in ``tox -e bench``."""

OUT = Path("results")
"""Where report files go (git-ignored)."""

NOISY = 0.05
"""Rows whose median is uncertain by more than this fraction (:mod:`reports.noise`: 1.57 IQR /
sqrt(rounds) / median, the half-width of its 95 % interval) are flagged noisy; so is every row
of a run saved at a load above one task per CPU (:data:`reports.noise.BUSY_LOAD_PER_CPU`).

Measured (2-vCPU Xeon VM; the tiny model, quick grid on cpu and cpu-2t, 45 rows per run):

| runs | load per CPU | median uncertainty: min / quartiles / max | rows above 5 % |
|---|---|---|---|
| README sample (ResNet18, 4 rows) | not recorded | 0.66 / 0.88, 2.6 / 3.4 % | 0 of 4 |
| three back-to-back runs, identical code | 6.0, 6.3, 8.6 | 0.14 / 5.6, 10.4, 16.0 / 264 % | 105 of 135 |

5 % sits above every row of the sample and below three quarters of the busy rows; a ratio of
two rows at 5 % each is uncertain by about 7 %, the size of the differences the report decides
(fused was 12-17 % slower than external). On the busy runs no figure inside a run predicted how
far its median moved between runs (Spearman 0.12 between uncertainty and that move, p = 0.16;
the median of identical code moved by a factor 2.67 between the three runs, quartiles 1.92 and
3.78): there the load is the cause, so busy runs are flagged whole rather than row by row.
"""

ALPHA = 0.05
"""Significance level of the Mann-Whitney U test in ``--compare``."""

TUNED = "tuned.json"
"""The file ``python -m bench.tune --release DIR`` writes into the release folder ``DIR``."""

BASELINE_DEVICE = "cpu"
"""The device config other devices' speedups are relative to."""
