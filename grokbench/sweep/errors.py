"""Errors a user can fix (the message names the file, key or service and what to do), and exit codes."""

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class SweepError(ValueError):
    """A sweep file or flag is wrong; the message names the file and the key."""


class TrackingError(SweepError):
    """The tracking store cannot be reached or written; the message says what to check."""
