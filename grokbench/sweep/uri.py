"""Where the MLflow tracking store is, and whether a command can use it: URIs made absolute (every trial runs in
its own directory), a server that answers and accepts the driver's credentials, a SQLite file that exists and is one
MLflow wrote.

Nothing here imports MLflow: a command checks its store before paying for that import.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path

from grokbench.sweep.credentials import check_login
from grokbench.sweep.errors import TrackingError


def tracking_uri(given: str | None = None) -> str:
    """--tracking-uri, else MLFLOW_TRACKING_URI, else ./mlflow.db; absolute, so that trials and driver agree."""
    return absolute_uri(given or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}")


def absolute_uri(uri: str) -> str:
    """Relative SQLite paths made absolute (each trial runs in its own directory). A plain path is taken as the
    SQLite file it names: MLflow would read it as a file store, which MLflow 3 refuses."""
    if uri.startswith("file:"):
        raise TrackingError(
            f"tracking URI {uri!r}: MLflow 3 refuses file stores; use sqlite:///path/to/mlflow.db or http://host:port"
        )
    if "://" not in uri:
        return f"sqlite:///{Path(uri).expanduser().resolve()}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{Path(uri[len('sqlite:///') :]).resolve()}"
    return uri


def sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


def check_reachable(uri: str, timeout_s: float = 5.0, login: bool = True) -> None:
    """A store a command may write to: a server that answers, and lets this driver in (`login`; the nodes, which
    hold no credentials, check only that it answers), or a SQLite file whose directory exists."""
    path = sqlite_path(uri)
    if path is not None:
        if not path.parent.is_dir():
            raise TrackingError(f"the directory of the SQLite tracking store {path.parent} does not exist")
        if path.is_dir():
            raise TrackingError(
                f"the SQLite tracking store {path} is a directory; name a file, e.g. sqlite:///{path / 'mlflow.db'}"
            )
        return
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as response:
                response.read()
        except (urllib.error.URLError, OSError) as err:
            raise TrackingError(
                f"the MLflow tracking server at {uri} does not answer ({getattr(err, 'reason', err)}); "
                "start it (mlflow server ...) or pass --tracking-uri / MLFLOW_TRACKING_URI"
            ) from None
        if login:
            check_login(uri, timeout_s)


def check_readable(uri: str) -> None:
    """A store a command only reads: it must exist already. Nothing is created or changed when it does not (MLflow
    would make a new store of a missing or empty file)."""
    path = sqlite_path(uri)
    if path is None:
        check_reachable(uri)
    elif not path.is_file():
        raise TrackingError(f"no MLflow store at {uri}; pass --tracking-uri (a sweep prints it when it ends)")
    elif not _is_mlflow_database(path):
        raise TrackingError(
            f"{path} is not an MLflow store (an empty file, or not one a sweep wrote); pass the "
            "--tracking-uri a sweep printed"
        )


def _is_mlflow_database(path: Path) -> bool:
    try:  # read-only: opening a file this way changes nothing in it
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            found = db.execute("select 1 from sqlite_master where type = 'table' and name = 'experiments'")
            return found.fetchone() is not None
    except sqlite3.DatabaseError:
        return False


def runs_link(uri: str, experiment_id: str) -> str:
    base = uri.rstrip("/") if uri.startswith("http") else "http://127.0.0.1:5000"
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
