"""A tracking server that lets in only its users (issue 37): a real `mlflow server --app-name basic-auth` on
127.0.0.1, with a fresh admin and a random password made here. A sweep with the admin's credentials logs its runs
and leaves the password nowhere; with none, or wrong ones, it exits 2 in one line before anything is written; and
`grokbench doctor` says whether the server asks for credentials and whether the driver's are accepted."""

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from test_cluster import free_port, stop_group, sweep_file, wait_for

from grokbench.sweep.credentials import HOW_TO_LOG_IN, read_credentials
from grokbench.sweep.errors import TrackingError

MLFLOW = str(Path(sys.executable).parent / "mlflow")
ADMIN = "admin"
CREDENTIAL_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI")


class AuthServer:
    """`mlflow server --app-name basic-auth`, whose auth config (admin, random password, user database) lives in
    tmp: nothing of it is in the repository."""

    def __init__(self, tmp: Path, store: Path):
        self.tmp, self.port = tmp, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.password = secrets.token_urlsafe(24)
        config = tmp / "basic_auth.ini"
        config.write_text(
            "[mlflow]\ndefault_permission = READ\n"
            f"database_uri = sqlite:///{tmp / 'basic_auth.db'}\n"
            f"admin_username = {ADMIN}\nadmin_password = {self.password}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        config.chmod(0o600)
        env = {
            **os.environ,
            "MLFLOW_AUTH_CONFIG_PATH": str(config),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),  # the auth app's CSRF key
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        command = [MLFLOW, "server", "--app-name", "basic-auth", "--workers", "1", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--backend-store-uri", f"sqlite:///{store}", "--serve-artifacts"]
        command += ["--artifacts-destination", str(tmp / "artifacts")]
        self.proc = subprocess.Popen(
            command,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp / "server.log", "a"),
        )

    def healthy(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(self.uri + "/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory, migrated_store):
    tmp = tmp_path_factory.mktemp("auth-server")
    shutil.copy(migrated_store, tmp / "mlflow.db")
    server = AuthServer(tmp, tmp / "mlflow.db")
    try:
        wait_for(server.healthy, 120, "the MLflow basic-auth server")
        yield server
    finally:
        stop_group(server.proc)


def driver_env(home: Path, **credentials: str) -> dict:
    """The environment of a driver whose only credentials are `credentials` (and home's ~/.mlflow/credentials)."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARS}
    env.setdefault("RAY_AUTH_TOKEN_PATH", str(Path.home() / ".ray" / "auth_token"))  # Ray's token, under the real home
    return {**env, "HOME": str(home), "PYTHONUNBUFFERED": "1", **credentials}


def credentials_file(home: Path, username: str, password: str) -> None:
    folder = home / ".mlflow"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "credentials").write_text(
        f"[mlflow]\nmlflow_tracking_username = {username}\nmlflow_tracking_password = {password}\n"
    )


def grokbench(args: list[str], env: dict, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    cwd.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "grokbench.cli", *args]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def admin_client(server: AuthServer, monkeypatch) -> mlflow.MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", server.password)
    return mlflow.MlflowClient(server.uri)


def files_holding(root: Path, secret: str) -> list[Path]:
    needle = secret.encode()
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.slow
def test_a_sweep_with_the_admins_credentials_logs_its_runs_and_the_password_is_nowhere(
    auth_server, local_ray, tmp_path, monkeypatch
):
    import ray

    path = sweep_file(tmp_path, "auth_ok", seeds=2, max_epochs=40)
    env = driver_env(tmp_path / "home", MLFLOW_TRACKING_USERNAME=ADMIN, MLFLOW_TRACKING_PASSWORD=auth_server.password)
    args = ["sweep", str(path), "--address", local_ray, "--tracking-uri", auth_server.uri]
    proc = grokbench([*args, "--storage", str(tmp_path / "results")], env, tmp_path / "work")
    assert proc.returncode == 0, proc.stdout + proc.stderr

    client = admin_client(auth_server, monkeypatch)
    experiment = client.get_experiment_by_name("grokbench/auth_ok")
    runs = client.search_runs([experiment.experiment_id])
    trial_runs = [r for r in runs if "grokbench.trial_key" in r.data.tags]
    assert len(trial_runs) == 2 and all(r.info.status == "FINISHED" for r in trial_runs)

    secret = auth_server.password
    for run in runs:  # the trials' runs and the sweep's parent run
        assert all(secret not in f"{k}={v}" for k, v in run.data.params.items()), run.info.run_id
        assert all(secret not in f"{k}={v}" for k, v in run.data.tags.items()), run.info.run_id
        into = tmp_path / "artifacts" / run.info.run_id
        into.mkdir(parents=True)
        mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=str(into), tracking_uri=auth_server.uri)
        assert files_holding(into, secret) == []
    assert any((tmp_path / "artifacts").rglob("summary.json"))  # the artifacts were there to search
    assert secret not in proc.stdout + proc.stderr
    assert files_holding(tmp_path / "results", secret) == []  # the plan, the checkpoints
    assert files_holding(tmp_path / "work", secret) == []
    session = Path(ray._private.worker._global_node.get_session_dir_path())  # the driver's and workers' logs
    assert any((session / "logs").glob("python-core-driver-*")) and files_holding(session / "logs", secret) == []
    assert secret.encode() not in (auth_server.tmp / "mlflow.db").read_bytes()  # the store the runs are in


@pytest.mark.slow
@pytest.mark.parametrize("given", ["none", "wrong in the environment", "wrong in ~/.mlflow/credentials"])
def test_a_sweep_the_server_refuses_exits_2_in_one_line_and_writes_nothing(
    auth_server, local_ray, tmp_path, monkeypatch, given
):
    home, work, wrong = tmp_path / "home", tmp_path / "work", secrets.token_urlsafe(12)
    env = driver_env(home)
    if given == "wrong in the environment":
        env = driver_env(home, MLFLOW_TRACKING_USERNAME=ADMIN, MLFLOW_TRACKING_PASSWORD=wrong)
    elif given == "wrong in ~/.mlflow/credentials":
        credentials_file(home, ADMIN, wrong)
    path = sweep_file(tmp_path, "auth_refused", seeds=1, max_epochs=40)
    args = ["sweep", str(path), "--address", local_ray, "--tracking-uri", auth_server.uri]
    proc = grokbench([*args, "--storage", str(tmp_path / "results")], env, work)

    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and HOW_TO_LOG_IN in lines[0], proc.stderr
    assert ("none are set" if given == "none" else f"refused the credentials of user '{ADMIN}'") in lines[0]
    assert wrong not in proc.stderr and auth_server.password not in proc.stderr
    assert not (tmp_path / "results").exists() and list(work.iterdir()) == []  # no storage, no mlflow.db
    assert admin_client(auth_server, monkeypatch).get_experiment_by_name("grokbench/auth_refused") is None


@pytest.mark.slow
def test_doctor_says_whether_the_server_asks_for_credentials_and_whether_it_accepts_the_drivers(
    auth_server, local_ray, tmp_path
):
    doctor = ["doctor", "xor_tiny", "--address", local_ray, "--tracking-uri", auth_server.uri]
    doctor += ["--storage", str(tmp_path / "results")]
    credentials_file(tmp_path / "admin", ADMIN, auth_server.password)
    accepted = grokbench(doctor, driver_env(tmp_path / "admin"), tmp_path / "work", timeout=180)
    refused = grokbench(doctor, driver_env(tmp_path / "nobody"), tmp_path / "work", timeout=180)

    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    lines = accepted.stdout.splitlines()
    assert any(line.startswith("ok") and " auth " in line and "asks for credentials" in line for line in lines)
    login = next(line for line in lines if " login " in line)
    assert login.startswith("ok") and f"user '{ADMIN}' from ~/.mlflow/credentials: accepted" in login
    assert refused.returncode == 1, refused.stdout + refused.stderr
    login = next(line for line in refused.stdout.splitlines() if " login " in line)
    assert login.startswith("FAIL") and "none set, and the server asks for them" in login
    assert HOW_TO_LOG_IN in refused.stdout and "Traceback" not in refused.stderr
    assert auth_server.password not in accepted.stdout + accepted.stderr + refused.stdout + refused.stderr


def test_credentials_are_read_as_mlflows_client_reads_them_and_never_shown(tmp_path, monkeypatch):
    from mlflow.utils.credentials import read_mlflow_creds

    monkeypatch.setenv("HOME", str(tmp_path))
    for name in CREDENTIAL_VARS:
        monkeypatch.delenv(name, raising=False)
    assert read_credentials() is None
    credentials_file(tmp_path, "from-file", "file-password")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "env-password")  # the environment wins, field by field
    ours, theirs = read_credentials(), read_mlflow_creds()
    assert (ours.username, ours.password) == (theirs.username, theirs.password) == ("from-file", "env-password")
    assert ours.source == "MLFLOW_TRACKING_PASSWORD and ~/.mlflow/credentials"
    assert "env-password" not in repr(ours)


def test_a_credentials_file_that_does_not_parse_is_one_line_that_does_not_quote_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".mlflow").mkdir()
    (tmp_path / ".mlflow" / "credentials").write_text("mlflow_tracking_password = hunter2-secret\n")  # no section
    with pytest.raises(TrackingError) as refused:
        read_credentials()
    message = str(refused.value)
    assert "~/.mlflow/credentials" in message and "hunter2-secret" not in message and "\n" not in message
