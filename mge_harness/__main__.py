"""``python -m mge_harness``: the ``mge-harness`` command (see :mod:`mge_harness.cli`)."""

import sys

from mge_harness.cli import main

sys.exit(main())
