"""Errors a user can fix: the message names the file, key or service and what to do."""


class SweepError(ValueError):
    """A sweep file or flag is wrong; the message names the file and the key."""


class TrackingError(SweepError):
    """The tracking store cannot be reached or written; the message says what to check."""
