"""``python -m reports``: see :mod:`reports.cli`."""

import sys

from mge_harness.reports.cli import main

sys.exit(main())
