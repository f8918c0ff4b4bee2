"""The one error type for user mistakes in the reports package."""


class ReportError(Exception):
    """A user mistake (missing file, unknown run id, bad rule) with a one-line message.

    The CLI prints it as ``error: <message>`` and exits with status 2. It mirrors
    ``exporters.errors.HarnessError`` without importing it: reports depends on no other package.
    """


#: The libraries ``python -m reports`` needs: the harness's ``[reports]`` extra.
REPORTS_EXTRA = ("pandas", "matplotlib", "scipy")


def require_reports_extra() -> None:
    """A one-line ReportError naming the ``[reports]`` extra when one of its libraries is
    missing (they are optional dependencies of the harness)."""
    from importlib.util import find_spec

    missing = [name for name in REPORTS_EXTRA if find_spec(name) is None]
    if missing:
        raise ReportError(
            f"reports need {', '.join(missing)}: pip install 'mge-release-harness[reports]'"
        )
