"""The `cluster` extra brings Ray's dashboard: a real `ray start --head` serves it on 127.0.0.1, as cluster.yaml's
head does. Never skipped: without ray[default] the head refuses to start and the test fails saying so."""

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import ray
from test_cluster import free_port

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).parent / "ray")
INSTALL_HINT = 'install the cluster extra: pip install -c constraints.txt -e ".[dev,cluster]"'


def start_head(temp_dir: Path, port: int, dashboard_port: int, token: str, log) -> subprocess.Popen:
    """A head of our own: its own process group (to stop it without `ray stop`, which stops every Ray on the host),
    its own temp dir (session files, and the address file `ray.init("auto")` would otherwise find), its own token
    (Ray 2.60 guards the dashboard with one, by default the user's ~/.ray/auth_token where it exists) and free ports
    (Ray's fixed defaults, such as the client server's 10001, may be taken by another Ray on the host)."""
    command = [
        RAY,
        "start",
        "--head",
        "--block",
        f"--port={port}",
        "--node-ip-address=127.0.0.1",
        "--num-cpus=1",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--ray-client-server-port={free_port()}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]
    env = {**os.environ, "RAY_TMPDIR": str(temp_dir), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    return subprocess.Popen(command, env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)


def group_alive(head: subprocess.Popen) -> bool:
    head.poll()  # reaps the `ray start` process itself once it exits, or it would count as alive
    try:
        os.killpg(head.pid, 0)
        return True
    except ProcessLookupError:
        return False


def stop_head(head: subprocess.Popen) -> None:
    """SIGTERM to `ray start` stops the head's processes in order (sent to all at once, the head waits 30 s for the
    GCS it has just lost); whatever of the group still runs a minute later is killed."""
    head.terminate()
    deadline = time.monotonic() + 60
    while group_alive(head) and time.monotonic() < deadline:
        time.sleep(0.5)
    if group_alive(head):
        os.killpg(head.pid, signal.SIGKILL)
    head.wait(timeout=30)


def version_answer(url: str, token: str) -> dict | None:
    """The dashboard's /api/version, or None while nothing listens; an HTTP error is raised as it is."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError:
        raise
    except OSError:
        return None


def test_a_head_started_as_cluster_yaml_does_serves_its_dashboard_on_127_0_0_1():
    # a short path: Ray's Unix sockets live under the temp dir and a socket path may not exceed 107 bytes
    with tempfile.TemporaryDirectory(prefix="gb-ray-") as temp, open(Path(temp) / "head.log", "w+") as log:
        dashboard_port = free_port()
        token = secrets.token_hex(16)
        head = start_head(Path(temp) / "ray", free_port(), dashboard_port, token, log)
        try:
            answer = None
            deadline = time.monotonic() + 120
            while answer is None and head.poll() is None and time.monotonic() < deadline:
                time.sleep(1)
                answer = version_answer(f"http://127.0.0.1:{dashboard_port}/api/version", token)
            if answer is None:
                log.seek(0)
                pytest.fail(
                    f"the Ray dashboard did not answer on 127.0.0.1:{dashboard_port} ({INSTALL_HINT}); "
                    f"`ray start` said:\n{log.read()[-3000:]}"
                )
            session = (Path(temp) / "ray" / "session_latest").resolve().name
            assert answer["ray_version"] == ray.__version__
            assert answer["session_name"] == session  # our head answered, not another Ray's dashboard on the host
        finally:
            stop_head(head)
