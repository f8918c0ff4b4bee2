"""The one error type for user mistakes, and the CLI wrapper that turns it into one line.

A ``HarnessError`` message names the file or value at fault and what was expected, on one
line. Internal bugs are not wrapped: they stay tracebacks.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

#: Exit code for a user mistake (bad option, bad file): the same code argparse uses.
EXIT_USAGE = 2


def first_line(err: BaseException, limit: int = 160) -> str:
    """The first line of an error's message, at most ``limit`` characters: MegEngine's and
    Lite's errors carry a C++ backtrace after it."""
    return (str(err).strip().splitlines() or ["unknown error"])[0][:limit]


class HarnessError(Exception):
    """A user mistake: a bad option, file, manifest or input, described in one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Runs ``main(argv)``; a ``HarnessError`` becomes ``error: <message>`` and exit code 2."""
    try:
        return main(argv)
    except HarnessError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
