"""Credentials for an MLflow tracking server that asks for them (`mlflow server --app-name basic-auth`, as the
cluster's head runs it), read as MLflow's own client reads them, so that the pre-flight and the client agree:
MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, each else the same key under [mlflow] in ~/.mlflow/credentials.

Only the driver holds them: trials never talk to MLflow. The password is sent to the server and nowhere else: it is
not logged, printed, or put in a param, tag or error message. Nothing here imports MLflow.
"""

from __future__ import annotations

import base64
import configparser
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from grokbench.sweep.errors import TrackingError

USERNAME_VAR = "MLFLOW_TRACKING_USERNAME"
PASSWORD_VAR = "MLFLOW_TRACKING_PASSWORD"
CREDENTIALS_FILE = "~/.mlflow/credentials"  # MLflow's documented client credentials file
HOW_TO_LOG_IN = (
    f"set {USERNAME_VAR} and {PASSWORD_VAR}, or put mlflow_tracking_username and mlflow_tracking_password "
    f"under [mlflow] in {CREDENTIALS_FILE}"
)
# a one-experiment search: every server answers it, and an authenticating one only to a user it lets in
_PROBE = "/api/2.0/mlflow/experiments/search?max_results=1"
REFUSED = (401, 403)


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)  # never in a repr, so never in a log line or traceback
    source: str


def read_credentials() -> Credentials | None:
    """The driver's credentials, or None when it has none (MLflow sends them only when both are set)."""
    file_username, file_password = _from_file()
    username = os.environ.get(USERNAME_VAR) or file_username
    password = os.environ.get(PASSWORD_VAR) or file_password
    if not (username and password):
        return None
    from_env = [name for name in (USERNAME_VAR, PASSWORD_VAR) if os.environ.get(name)]
    source = " and ".join(from_env + ([CREDENTIALS_FILE] if len(from_env) < 2 else []))
    return Credentials(username, password, source)


def _from_file() -> tuple[str | None, str | None]:
    path = Path(CREDENTIALS_FILE).expanduser()
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError, OSError) as err:  # the name only: a line may hold the password
        raise TrackingError(f"cannot read {CREDENTIALS_FILE} ({type(err).__name__}); {HOW_TO_LOG_IN}") from None
    if "mlflow" not in parser:
        return None, None
    section = parser["mlflow"]
    return section.get(USERNAME_VAR.lower()), section.get(PASSWORD_VAR.lower())


def login_status(uri: str, credentials: Credentials | None, timeout_s: float = 5.0) -> int:
    """The HTTP status the server at `uri` answers a search made with `credentials` (or none): 200 when it lets
    them in, 401 or 403 when it refuses them. Raises URLError or OSError when it does not answer."""
    headers = {"Authorization": _basic(credentials)} if credentials else {}
    request = urllib.request.Request(uri.rstrip("/") + _PROBE, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def _basic(credentials: Credentials) -> str:
    token = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode("ascii")
    return f"Basic {token}"


def check_login(uri: str, timeout_s: float = 5.0) -> None:
    """Refuse, in one line, a tracking server that will not let this driver in, before anything is written."""
    credentials = read_credentials()
    try:
        status = login_status(uri, credentials, timeout_s)
    except (urllib.error.URLError, OSError) as err:
        raise TrackingError(
            f"the MLflow tracking server at {uri} does not answer ({getattr(err, 'reason', err)})"
        ) from None
    if status in REFUSED:
        raise TrackingError(refusal(uri, credentials, status))


def refusal(uri: str, credentials: Credentials | None, status: int) -> str:
    if credentials is None:
        return f"the MLflow tracking server at {uri} asks for credentials and none are set; {HOW_TO_LOG_IN}"
    return (
        f"the MLflow tracking server at {uri} refused the credentials of user {credentials.username!r} from "
        f"{credentials.source} (HTTP {status}); {HOW_TO_LOG_IN}, with a user and password it accepts"
    )
