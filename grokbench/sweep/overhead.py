"""`grokbench bench-sweep`: what running inside a sweep costs a trial, measured side by side.

The same config runs alternately as `grokbench run` (its own process) and as the only trial of a one-trial sweep
(a Tune worker reporting every evaluation, checkpointing, the driver logging to MLflow). Each side's figure is
the trial's own wall clock from its start in its process to its end (`wall_s`: set-up, training, evaluation,
checkpoints and reporting included). The sweep's start-up (Ray, workers, MLflow) is reported apart.
"""

from __future__ import annotations

import io
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from grokbench.sweep.driver import SweepOptions, run_sweep
from grokbench.sweep.keys import experiment_name
from grokbench.sweep.mlflow_store import TrackingStore
from grokbench.sweep.spec import load_sweep

log = logging.getLogger("grokbench.sweep.overhead")


def _standalone_wall_s(config: dict[str, Any]) -> float:
    argv = [sys.executable, "-m", "grokbench.cli", "run", config["task"], "--json"]
    for key, value in config.items():
        if key != "task":
            argv += ["--" + key.replace("_", "-"), str(value)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])["wall_s"]


def _sweep_wall_s(config: dict[str, Any], workdir: Path, index: int) -> tuple[float, float]:
    settings = {k: v for k, v in config.items() if k not in ("task", "method", "max_epochs", "threads")}
    name = f"overhead{index}"
    path = workdir / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "task": config["task"],
                "budget": {"max_epochs": config["max_epochs"]},
                "base": settings,
                "methods": {config["method"]: {}},
                "resources": {"cpus_per_trial": config["threads"]},
            }
        )
    )
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    started = time.perf_counter()
    code = run_sweep(
        load_sweep(str(path)), SweepOptions(tracking_uri=uri, storage=str(workdir / "results")), out=io.StringIO()
    )
    total = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"the overhead sweep failed (exit {code})")
    (run,) = _runs(uri, name)
    wall = run.data.metrics["wall_s"]
    return wall, total - wall


def _runs(uri: str, sweep_name: str) -> list:
    store = TrackingStore(uri)
    return store.trial_runs([store.experiment_id(experiment_name(sweep_name))])


def measure_overhead(config: dict[str, Any], rounds: int = 2, progress: Callable[[str], None] = log.info) -> dict:
    import ray

    ray.init(address="local", num_cpus=max(int(config["threads"]), 1), include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory(prefix="grokbench-overhead-") as tmp:
            pairs = []
            for r in range(rounds):
                standalone = _standalone_wall_s(config)
                in_sweep, startup = _sweep_wall_s(config, Path(tmp), r)
                pairs.append((standalone, in_sweep, startup))
                progress(
                    f"round {r + 1}/{rounds}: run {standalone:.1f} s, in sweep {in_sweep:.1f} s "
                    f"(+{100 * (in_sweep / standalone - 1):.1f}%), sweep start-up and teardown {startup:.1f} s"
                )
    finally:
        ray.shutdown()
    return {
        "config": config,
        "rounds": rounds,
        "standalone_wall_s": statistics.median(p[0] for p in pairs),
        "in_sweep_wall_s": statistics.median(p[1] for p in pairs),
        "overhead_ratio": statistics.median(p[1] / p[0] for p in pairs),
        "sweep_startup_s": statistics.median(p[2] for p in pairs),
    }


def _ray(*args: str, env: dict, block: bool = False) -> subprocess.Popen | None:
    command = [str(Path(sys.executable).parent / "ray"), *args]
    if block:  # its own process group, so that stopping it stops only this node
        return subprocess.Popen(
            command + ["--block"], env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    subprocess.run(command, env=env, check=True, capture_output=True)
    return None


def measure_distribution(trials: int = 8, progress: Callable[[str], None] = log.info) -> dict:
    """The same tiny xor sweep on one local node with 2 CPUs and on a head + an extra node with 1 CPU each
    (the same cores), so the difference is the cost of distribution."""
    import os
    import signal
    import socket

    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    results = {}
    with tempfile.TemporaryDirectory(prefix="grokbench-nodes-") as tmp:
        workdir = Path(tmp)
        path = workdir / "nodes.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "name": "nodes",
                    "task": "xor",
                    "budget": {"max_epochs": 200},
                    "base": {"eval_every": 10},
                    "grid": {"seed": list(range(trials))},
                    "methods": {"baseline": {}},
                    "resources": {"cpus_per_trial": 1},
                }
            )
        )
        for layout, cpus in (("one node", [2]), ("two nodes", [1, 1])):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            address = f"127.0.0.1:{port}"
            nodes = [
                _ray(
                    "start",
                    "--head",
                    f"--port={port}",
                    f"--num-cpus={cpus[0]}",
                    "--include-dashboard=false",
                    "--node-ip-address=127.0.0.1",
                    env=env,
                    block=True,
                )
            ]
            nodes += [
                _ray(
                    "start",
                    f"--address={address}",
                    f"--num-cpus={c}",
                    "--node-ip-address=127.0.0.1",
                    env=env,
                    block=True,
                )
                for c in cpus[1:]
            ]
            try:
                time.sleep(15)  # the nodes register
                uri = f"sqlite:///{workdir / (layout.replace(' ', '_') + '.db')}"
                started = time.perf_counter()
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "grokbench.cli",
                        "sweep",
                        str(path),
                        "--address",
                        address,
                        "--tracking-uri",
                        uri,
                        "--storage",
                        str(workdir / "results"),
                    ],
                    env=env,
                    check=True,
                    capture_output=True,
                )
                wall = time.perf_counter() - started
            finally:
                for node in nodes:
                    os.killpg(node.pid, signal.SIGKILL)
                    node.wait()
            runs = _runs(uri, "nodes")
            trial_wall = statistics.mean(r.data.metrics["wall_s"] for r in runs)
            nodes_used = len({r.data.tags["node_id"] for r in runs})
            # per trial, what the sweep spent beyond the trials' own wall clocks (2 trials run at a time)
            overhead = wall * 2 / trials - trial_wall
            results[layout] = {
                "sweep_wall_s": wall,
                "trial_wall_s": trial_wall,
                "nodes_used": nodes_used,
                "per_trial_overhead_s": overhead,
            }
            progress(
                f"{layout}: sweep {wall:.1f} s, {trials} trials on {nodes_used} node(s), mean trial "
                f"{trial_wall:.1f} s, scheduling and logging ≈{overhead:.1f} s a trial"
            )
    return results
