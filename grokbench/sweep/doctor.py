"""`grokbench doctor`, and a sweep's pre-flight: can every node run a trial?

On the driver, the one process that talks to MLflow, it checks whether the tracking server asks for credentials and
whether it accepts the driver's. On each alive Ray node a zero-CPU task checks that grokbench imports at the driver's
version, that the tracking server answers, that the checkpoint storage takes a write, that the task's data loads,
and that a GPU is there when trials ask for one. Every failure names the node and the fix.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Finding:
    node: str
    check: str
    ok: bool
    detail: str
    fix: str = ""


def _probe_storage(storage: str) -> None:
    import pyarrow.fs

    filesystem, root = pyarrow.fs.FileSystem.from_uri(storage if "://" in storage else os.path.abspath(storage))
    filesystem.create_dir(root, recursive=True)
    probe = f"{root}/.grokbench-doctor-{uuid.uuid4().hex}"
    with filesystem.open_output_stream(probe) as stream:
        stream.write(b"ok")
    filesystem.delete_file(probe)


DATA_FIX = (
    "put the data on this node (cluster.yaml's setup_commands download MNIST) or set GROKBENCH_DATA in the "
    "node's environment before `ray start`"
)


def check_data(trial: dict[str, Any]) -> tuple:
    """(check, ok, detail, fix): does the trial's task load its data here?"""
    try:
        from grokbench.resolve import config_from, resolve
        from grokbench.tasks import TASKS

        cfg = config_from(trial)
        TASKS[cfg.task].load_data(resolve(cfg))
        return ("data", True, f"{cfg.task} loads", "")
    except Exception as err:
        return ("data", False, str(err), DATA_FIX)


def check_this_node(tracking_uri: str, storage: str, trial: dict[str, Any], needs_gpu: bool) -> list[tuple]:
    """Runs on one node; returns (check, ok, detail, fix) tuples."""
    results = []
    try:
        from grokbench.sweep.provenance import code_version
        from grokbench.sweep.uri import check_reachable

        results.append(("grokbench", True, code_version(), ""))
    except Exception as err:  # an import failure is exactly what this check is for
        return [
            (
                "grokbench",
                False,
                f"cannot import grokbench: {err}",
                "install this project on the node "
                "(pip install -e .) before `ray start`, as cluster.yaml's setup_commands do",
            )
        ]
    if tracking_uri.startswith("http"):
        try:
            check_reachable(tracking_uri, login=False)  # only the driver holds credentials: `check_login`
            results.append(("tracking", True, tracking_uri, ""))
        except Exception as err:
            results.append(
                (
                    "tracking",
                    False,
                    str(err),
                    "start the MLflow server on an address the nodes can "
                    "reach (cluster.yaml binds it to the head's private IP) and allow it in the firewall",
                )
            )
    try:
        _probe_storage(storage)
        results.append(("storage", True, storage, ""))
    except Exception as err:
        results.append(
            (
                "storage",
                False,
                f"cannot write to {storage}: {err}",
                "use storage every node can write (--storage s3://bucket/path on a cluster) and give the "
                "nodes credentials for it (an instance profile)",
            )
        )
    results.append(check_data(trial))
    if needs_gpu:
        import torch

        ok = torch.cuda.is_available()
        results.append(
            (
                "gpu",
                ok,
                torch.cuda.get_device_name(0) if ok else "torch sees no CUDA device",
                "" if ok else "use a GPU image with the NVIDIA driver, or run with --gpus-per-trial 0",
            )
        )
    return results


def check_login(tracking_uri: str) -> list[Finding]:
    """On the driver, the only process that talks to MLflow: does the tracking server ask for credentials, and does
    it accept the driver's? One finding each; none for a SQLite store."""
    from grokbench.sweep.credentials import HOW_TO_LOG_IN, REFUSED, login_status, read_credentials

    if not tracking_uri.startswith("http"):
        return []
    try:
        asks = login_status(tracking_uri, None) in REFUSED
        credentials = read_credentials()
        status = login_status(tracking_uri, credentials) if credentials else None
    except Exception as err:  # a server that does not answer, or a credentials file that does not parse
        return [Finding("driver", "auth", False, f"cannot ask {tracking_uri}: {getattr(err, 'reason', err)}")]
    findings = [
        Finding(
            "driver",
            "auth",
            True,
            "the server asks for credentials"
            if asks
            else "the server asks for none: whoever reaches it may read and delete every run",
        )
    ]
    if credentials is None:
        detail = "none set, and the server asks for them" if asks else "none set"
        findings.append(Finding("driver", "login", not asks, detail, HOW_TO_LOG_IN))
    else:
        accepted = status not in REFUSED
        verdict = "accepted" if accepted else f"refused (HTTP {status})"
        detail = f"user {credentials.username!r} from {credentials.source}: {verdict}"
        findings.append(Finding("driver", "login", accepted, detail, f"{HOW_TO_LOG_IN}, that the server accepts"))
    return findings


def check_cluster(tracking_uri: str, storage: str, trial: dict[str, Any], cpus: float, gpus: float) -> list[Finding]:
    """Check the driver's login to the tracking server, run `check_this_node` on every alive node, and check that
    some node fits one trial."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from grokbench.sweep.nodes import autoscaling, nodes_fitting
    from grokbench.sweep.provenance import code_version

    expected = code_version()
    nodes = [n for n in ray.nodes() if n["Alive"]]
    findings = check_login(tracking_uri)
    fits = nodes_fitting(cpus, gpus)
    detail = f"{len(fits)} of {len(nodes)} nodes fit a trial of {cpus:g} CPU(s) and {gpus:g} GPU(s)"
    if not fits and autoscaling():
        detail += " (the autoscaler adds one when a sweep asks; nodes added later are checked by the sweep)"
    findings.append(
        Finding(
            "cluster",
            "resources",
            bool(fits) or autoscaling(),
            detail,
            "" if fits else "lower --cpus-per-trial / --gpus-per-trial, or add nodes with those resources",
        )
    )
    remote = ray.remote(num_cpus=0)(check_this_node)
    pending = {
        n["NodeID"]: remote.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(
            tracking_uri, storage, trial, gpus > 0 and n["Resources"].get("GPU", 0) > 0
        )
        for n in nodes
    }
    names = {n["NodeID"]: f"{n['NodeManagerAddress']} ({n['NodeID'][:8]})" for n in nodes}
    for node_id, ref in pending.items():
        try:
            results = ray.get(ref, timeout=300)
        except Exception as err:
            findings.append(
                Finding(
                    names[node_id],
                    "reachable",
                    False,
                    f"the check did not run: {err}",
                    "see `ray status` and the node's logs (/tmp/ray/session_latest/logs)",
                )
            )
            continue
        for check, ok, detail, fix in results:
            if check == "grokbench" and ok and detail != expected:
                ok, fix = False, f"install the driver's version ({expected}) on this node and restart its Ray"
            findings.append(Finding(names[node_id], check, ok, detail, fix))
    return findings


def format_findings(findings: list[Finding]) -> str:
    lines = []
    for f in findings:
        lines.append(f"{'ok  ' if f.ok else 'FAIL'}  {f.node:<28} {f.check:<10} {f.detail}")
        if not f.ok and f.fix:
            lines.append(f"      {'':<28} {'fix:':<10} {f.fix}")
    return "\n".join(lines)
