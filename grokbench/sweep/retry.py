"""Waiting out a tracking store that is down: `patiently` retries a call while its errors are transient (a server
restarting, a dropped connection, a locked SQLite file) and gives up with one clear message after a patience that
GROKBENCH_TRACKING_PATIENCE_S sets. Errors that say the request itself is wrong are raised at once."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TypeVar

from grokbench.sweep.errors import TrackingError

T = TypeVar("T")

PATIENCE_ENV = "GROKBENCH_TRACKING_PATIENCE_S"  # how long the driver waits out a tracking store that is down
DEFAULT_PATIENCE_S = 300.0
RETRYABLE_HTTP = (408, 429, 500, 502, 503, 504)  # timeouts, overload, a server restarting or down

log = logging.getLogger("grokbench.sweep.retry")


def is_transient(err: Exception) -> bool:
    """A server restart, a dropped connection or a locked database (worth waiting out), not a rejected request."""
    import requests
    from mlflow.exceptions import MlflowException

    if isinstance(err, MlflowException):  # connection errors arrive as INTERNAL_ERROR (500), and so do SQL ones
        text = str(err)
        if "sqlite" in text.lower() or "database schema" in text:  # of a SQL store, only a lock passes
            return "database is locked" in text
        return err.get_http_status_code() in RETRYABLE_HTTP
    if isinstance(err, requests.HTTPError):  # an artifact upload the server answered
        return err.response is not None and err.response.status_code in RETRYABLE_HTTP
    # requests' and urllib3's connection errors are OSErrors; a local artifact directory's are not transient
    return isinstance(err, OSError) and not isinstance(err, (PermissionError, FileNotFoundError))


def retry_only_patiently() -> None:
    """Leave retrying to `patiently`: MLflow's HTTP layer would re-send a POST (creating a second run) and wait
    minutes per call before a caller can say anything."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


def tracking_patience_s() -> float:
    text = os.environ.get(PATIENCE_ENV, str(DEFAULT_PATIENCE_S))
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise TrackingError(f"{PATIENCE_ENV}={text!r}: must be a number of seconds >= 0")
    return value


def patiently(call: Callable[[], T], uri: str, patience_s: float | None = None) -> T:
    """`call()`, retried with backoff while the tracking store is unreachable, for up to `patience_s` (default
    GROKBENCH_TRACKING_PATIENCE_S, else 5 minutes).

    Only for idempotent calls: a write whose response was lost may already have been applied, and is sent again.
    """
    patience_s = tracking_patience_s() if patience_s is None else patience_s
    deadline = time.monotonic() + patience_s
    wait = 1.0
    while True:
        try:
            return call()
        except Exception as err:
            if not is_transient(err):
                raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TrackingError(
                    f"the MLflow tracking store {uri} has not answered for {patience_s:.0f} s ({err}); "
                    "bring it back and continue the sweep with --resume"
                ) from err
            log.warning(
                "tracking store %s unreachable (%s); retrying in %.0f s", uri, type(err).__name__, min(wait, remaining)
            )
            time.sleep(min(wait, remaining))
            wait = min(wait * 2, 30.0)
