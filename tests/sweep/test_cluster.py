"""A real multi-node Ray cluster on this machine (a head and an extra node started with `ray start`, each in its
own process group) and a real `mlflow server` on 127.0.0.1: sweeps spread over both nodes, survive the loss of a
node and a restart of the tracking server, and `grokbench doctor` names what is wrong with which node."""

import copy
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import mlflow
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")
MLFLOW = str(Path(sys.executable).parent / "mlflow")
BASE_ENV = {**os.environ, "RAY_AUTH_MODE": "token", "PYTHONUNBUFFERED": "1"}  # several raylets on one host


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise TimeoutError(f"timed out waiting for {what}")


def alive_nodes(address: str) -> int:
    out = subprocess.run([RAY, "status", "--address", address], env=BASE_ENV, capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines() if line.strip().startswith("1 node_"))


class Cluster:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen] = {}

    def start_node(self, name: str, head: bool, env_extra: dict) -> None:
        command = [RAY, "start", "--block", "--num-cpus=1", "--disable-usage-stats"]
        command += (
            ["--head", f"--port={self.port}", "--node-ip-address=127.0.0.1", "--include-dashboard=false"]
            if head
            else [f"--address={self.address}", "--node-ip-address=127.0.0.1"]
        )
        log = open(self.tmp / f"{name}.log", "w")
        self.procs[name] = subprocess.Popen(
            command, env={**BASE_ENV, **env_extra}, start_new_session=True, stdout=log, stderr=subprocess.STDOUT
        )

    def wait_started(self, name: str, nodes: int) -> None:
        """Until `ray start` says the node is up (read from its log: polling `ray status`, a Python process a
        time, would take the CPU the node boots on), then until the cluster counts `nodes` nodes."""
        log, proc = self.tmp / f"{name}.log", self.procs[name]

        def started() -> bool:
            if proc.poll() is not None:
                tail = log.read_text()[-3000:]
                raise RuntimeError(f"`ray start` of the {name} node exited ({proc.returncode}):\n{tail}")
            return "Ray runtime started" in log.read_text()

        wait_for(started, 90, f"`ray start` of the {name} node")
        wait_for(lambda: alive_nodes(self.address) == nodes, 60, f"the cluster to count {nodes} node(s)")

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_group(proc)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, module_server):  # the server is launched first: it boots while the nodes do
    tmp = tmp_path_factory.mktemp("cluster")
    empty = tmp / "no-data"
    empty.mkdir()
    c = Cluster(tmp)
    try:
        c.start_node("head", head=True, env_extra={})
        c.wait_started("head", nodes=1)
        # the extra node has no MNIST: `grokbench doctor` must say so
        c.start_node("worker", head=False, env_extra={"GROKBENCH_DATA": str(empty)})
        c.wait_started("worker", nodes=2)
        yield c
    finally:
        c.stop()


class Server:
    def __init__(self, tmp: Path, store: Path):
        self.tmp, self.store, self.port = tmp, store, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self) -> None:
        self.launch()
        self.wait_healthy()

    def launch(self) -> None:
        env = {**BASE_ENV, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        command = [
            MLFLOW,
            "server",
            "--workers",
            "1",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--backend-store-uri",
            f"sqlite:///{self.store}",
            "--serve-artifacts",
            "--artifacts-destination",
            str(self.tmp / "artifacts"),
        ]
        self.proc = subprocess.Popen(
            command,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=open(self.tmp / "server.log", "a"),
        )

    def wait_healthy(self) -> None:
        wait_for(self.healthy, 90, "the MLflow server")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.uri + "/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        stop_group(self.proc)


class FlakyProxy:
    """A real HTTP hop in front of the server that drops the connection halfway through every `every`-th answer to
    a write: the server has applied the write, the client only sees a broken response (as when a server dies
    mid-reply), so it must retry, and the retry must duplicate nothing."""

    def __init__(self, upstream_port: int, every: int):
        self.writes = self.dropped = self.upstream_failures = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    payload = answer.read()
                except OSError:  # the server is down: the client sees its connection closed unanswered
                    proxy.count_upstream_failure()
                    self.close_connection = True
                    return
                finally:
                    upstream.close()
                self.send_response(answer.status)
                for k, v in answer.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "GET" and proxy.drop_this_one():
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = forward

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.every = every
        self.uri = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def drop_this_one(self) -> bool:
        with self.lock:
            self.writes += 1
            drop = self.writes % self.every == 0
            self.dropped += drop
            return drop

    def count_upstream_failure(self) -> None:
        with self.lock:
            self.upstream_failures += 1

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def module_server(tmp_path_factory, migrated_store):
    tmp = tmp_path_factory.mktemp("server")
    shutil.copy(migrated_store, tmp / "server.db")
    s = Server(tmp, tmp / "server.db")
    s.launch()  # not waited for here: the `server` fixture waits until it answers
    yield s
    s.stop()


@pytest.fixture
def server(module_server):
    """One server for the module (it takes seconds to start), each test logging to an experiment of its own; a test
    that stopped it and failed before starting it again leaves it down, so it is started again here."""
    if module_server.proc.poll() is not None:  # gone, not merely slow to answer: never a second one on its port
        module_server.launch()
    module_server.wait_healthy()
    return module_server


def sweep_file(tmp: Path, name: str, seeds: int, max_epochs: int = 150, after: int = 0) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "task": "xor",
                "budget": {"max_epochs": max_epochs},
                "base": {"eval_every": 10, "epochs_after_grok": after},
                "grid": {"seed": list(range(seeds))},
                "methods": {"baseline": {}},
                "resources": {"cpus_per_trial": 1},
                "checkpoint_every": 20,
                "max_failures": 3,
            }
        )
    )
    return path


def sweep_command(path: Path, cluster: Cluster, uri: str, tmp: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "grokbench.cli",
        "sweep",
        str(path),
        "--address",
        cluster.address,
        "--tracking-uri",
        uri,
        "--storage",
        str(tmp / "results"),
    ]


def check_runs_once(uri: str, experiment: str, trials: int) -> list:
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`grokbench.trial_key` LIKE '%'")  # no parent
    keys = [r.data.tags["grokbench.trial_key"] for r in runs]
    assert len(keys) == trials and len(set(keys)) == trials, keys  # none lost, none logged twice
    for run in runs:
        assert run.data.tags["status"] == "grokked" and run.info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "test_acc")]
        assert steps == sorted(set(steps)), steps
        artifacts = sorted(a.path for a in client.list_artifacts(run.info.run_id))
        assert artifacts == ["config.json", "summary.json"]
    return runs


@pytest.mark.parametrize("name", ["cluster.yaml", "cluster-local.yaml"])
def test_cluster_files_pass_rays_validator_and_a_broken_copy_fails(name):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((REPO / name).read_text())
    validate_config(prepare_config(copy.deepcopy(config)))
    broken = copy.deepcopy(config)
    broken["max_wrokers"] = 4  # a misspelt key
    with pytest.raises(Exception, match="max_wrokers|Additional properties"):
        validate_config(prepare_config(broken))


@pytest.mark.slow
def test_doctor_names_the_node_without_data_a_missing_resource_and_an_unreachable_server(cluster, server):
    env = {k: v for k, v in BASE_ENV.items() if k != "GROKBENCH_DATA"}  # each node uses its own data directory
    env["GROKBENCH_DATA"] = os.environ.get("GROKBENCH_DATA", "")
    doctor = [sys.executable, "-m", "grokbench.cli", "doctor", "mnist", "--address", cluster.address]
    env_nodes_own = {k: v for k, v in env.items() if k != "GROKBENCH_DATA"}
    proc = subprocess.run(
        doctor + ["--tracking-uri", server.uri, "--gpus-per-trial", "1"],
        env=env_nodes_own,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    resource = next(line for line in lines if "resources" in line)
    assert resource.startswith("FAIL") and "0 of 2 nodes fit a trial of 1 CPU(s) and 1 GPU(s)" in resource
    data_failures = [line for line in lines if line.startswith("FAIL") and " data " in line]
    assert len(data_failures) == 1, proc.stdout  # the extra node, not the head
    assert "fix:" in proc.stdout and "GROKBENCH_DATA" in proc.stdout
    assert sum(1 for line in lines if line.startswith("ok") and " tracking " in line) == 2
    unreachable = subprocess.run(
        doctor + ["--tracking-uri", "http://127.0.0.1:9"],
        env=env_nodes_own,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert unreachable.returncode == 2
    assert "the MLflow tracking server at http://127.0.0.1:9 does not answer" in unreachable.stderr


def runs_of(server: Server, experiment: str) -> list:
    client = mlflow.MlflowClient(server.uri)
    ids = [e.experiment_id for e in client.search_experiments() if e.name == experiment]
    return client.search_runs(ids) if ids else []


def sweep_with_fault(
    cluster: Cluster, server: Server, tmp: Path, name: str, ready, fault, through: str | None = None
) -> tuple[list, str]:
    """Run a 4-trial sweep logging to the server (`through` another address of it, if given); once `ready(runs)`
    holds, inject `fault()`; the sweep must still end well. Its runs, each once, and the driver's output."""
    path = sweep_file(tmp, name, seeds=4, after=100, max_epochs=300)
    driver = subprocess.Popen(
        sweep_command(path, cluster, through or server.uri, tmp),
        env=BASE_ENV,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: ready(runs_of(server, f"grokbench/{name}")), 240, f"the moment to break {name}")
        fault()
        out, _ = driver.communicate(timeout=500)
        assert driver.returncode == 0, out
    finally:
        stop_group(driver)
    return check_runs_once(server.uri, f"grokbench/{name}", trials=4), out


@pytest.mark.slow
def test_a_sweep_through_a_hop_that_loses_answers_and_a_server_restart_logs_each_run_once_on_both_nodes(
    cluster, server, tmp_path
):
    def restart() -> None:
        server.stop()
        time.sleep(4)
        server.start()

    proxy = FlakyProxy(server.port, every=5)
    try:
        runs, out = sweep_with_fault(
            cluster,
            server,
            tmp_path,
            "restart",
            ready=lambda runs: any("test_acc" in r.data.metrics for r in runs),
            fault=restart,
            through=proxy.uri,
        )
    finally:
        proxy.stop()
    assert proxy.dropped >= 5, proxy.dropped  # creating runs, params, metric batches, summaries, tags were all hit
    assert proxy.upstream_failures >= 1  # the sweep ran into the restart: requests went unanswered while it lasted
    assert "retrying" in out
    assert len({r.data.tags["node_id"] for r in runs}) == 2  # one CPU a node: trials ran on both


@pytest.mark.slow
def test_a_server_gone_for_good_stops_the_sweep_clearly_and_resume_finishes_it(cluster, server, tmp_path):
    path = sweep_file(tmp_path, "gone", seeds=3, after=100, max_epochs=300)  # one a node, one queued
    command = sweep_command(path, cluster, server.uri, tmp_path) + ["--sweep-id", "gone-1"]
    env = {**BASE_ENV, "GROKBENCH_TRACKING_PATIENCE_S": "5"}
    driver = subprocess.Popen(
        command, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_for(
            lambda: any("test_acc" in r.data.metrics for r in runs_of(server, "grokbench/gone")),
            240,
            "the first curve points",
        )
        server.stop()
        out, _ = driver.communicate(timeout=300)
    finally:
        stop_group(driver)
    assert driver.returncode == 2, out
    assert f"the MLflow tracking store {server.uri} has not answered for 5 s" in out and "--resume" in out, out
    assert "Traceback" not in out, out
    server.start()
    resumed = subprocess.run(command + ["--resume"], env=BASE_ENV, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    check_runs_once(server.uri, "grokbench/gone", trials=3)


@pytest.mark.slow
def test_losing_a_node_mid_sweep_loses_no_trial(cluster, server, tmp_path):
    """Runs last: it kills the extra node for good."""
    runs, _ = sweep_with_fault(
        cluster,
        server,
        tmp_path,
        "nodeloss",
        ready=lambda runs: len({r.data.tags.get("node_id") for r in runs} - {None}) == 2,  # both nodes busy
        fault=lambda: stop_group(cluster.procs["worker"]),  # the extra node dies with its trial
    )
    assert len(runs) / 4 == 1.0  # trials completed / planned
