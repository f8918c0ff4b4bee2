"""The one error type for user mistakes in the reports package."""


class ReportError(Exception):
    """A user mistake (missing file, unknown run id, bad rule) with a one-line message.

    The CLI prints it as ``error: <message>`` and exits with status 2. It mirrors
    ``exporters.errors.HarnessError`` without importing it: reports depends on no other package.
    """
