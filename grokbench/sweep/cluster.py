"""The Ray side of a sweep before any trial: join or start a cluster that fits a trial, and check that its nodes
can run one (the pre-flight that `grokbench doctor` also runs)."""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
from pathlib import Path

from grokbench.sweep.doctor import Finding, check_cluster, check_data, format_findings
from grokbench.sweep.errors import SweepError
from grokbench.sweep.nodes import autoscaling, nodes_fitting
from grokbench.sweep.plan import example_trial
from grokbench.sweep.spec import SweepSpec

AUTOSCALE_WAIT_S = 900.0

log = logging.getLogger("grokbench.sweep.cluster")


def on_this_machine(address: str | None) -> bool:
    """Whether the sweep's Ray runs here: no address (this machine's running cluster, else a new local Ray)."""
    address = address or os.environ.get("RAY_ADDRESS")
    return address in (None, "", "local", "auto")


def check_data_here(spec: SweepSpec) -> None:
    """The pre-flight's data check, in this process: a sweep on this machine stops before Ray starts when its
    trials could not load their data (each would fail, be retried, and fail again)."""
    check, ok, detail, fix = check_data(example_trial(spec).to_dict())
    if not ok:
        finding = Finding("this machine", check, ok, detail, fix)
        raise SweepError("this machine cannot run this sweep's trials:\n" + format_findings([finding]))


def connect_ray(address: str | None, spec: SweepSpec) -> None:
    """Join the cluster at `address` (or RAY_ADDRESS, or a running local one), else start a local Ray; then check
    that it has what one trial asks for. In-process callers (tests, notebooks) may have initialised Ray already."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    if address and address not in ("auto", "local") and not address.startswith("ray://"):
        error = unreachable(address)
        if error:
            raise SweepError(
                f"cannot reach the Ray cluster at {address} ({error}); start it (ray start --head, or "
                "ray up cluster.yaml), or leave out --address to run on a local Ray"
            )
    if not ray.is_initialized():
        data = os.environ.get("GROKBENCH_DATA")
        env = {"GROKBENCH_DATA": str(Path(data).expanduser().resolve())} if data else {}
        # no address: the cluster running on this machine, else a new local Ray. Ray's own "auto" would also
        # follow the address file of a cluster that died and retry it for minutes
        ray.init(
            address=address or running_local_cluster() or "local", runtime_env={"env_vars": env}, log_to_driver=False
        )
    cpus, gpus = spec.resources.cpus_per_trial, spec.resources.gpus_per_trial
    if nodes_fitting(cpus, gpus):
        return
    if not autoscaling():
        raise SweepError(
            f"no node of the Ray cluster has the {cpus:g} CPU(s) and {gpus:g} GPU(s) one trial asks "
            "for; lower --cpus-per-trial / --gpus-per-trial, or add nodes"
        )
    _wait_for_autoscaler(cpus, gpus)


def _wait_for_autoscaler(cpus: float, gpus: float) -> None:
    from ray.autoscaler.sdk import request_resources

    log.warning("waiting for the autoscaler to add a node with %g CPU(s) and %g GPU(s) ...", cpus, gpus)
    request_resources(bundles=[{"CPU": cpus, **({"GPU": gpus} if gpus else {})}])
    deadline = time.monotonic() + AUTOSCALE_WAIT_S
    while not nodes_fitting(cpus, gpus):
        if time.monotonic() > deadline:
            raise SweepError(
                f"the autoscaler added no node with {cpus:g} CPU(s) and {gpus:g} GPU(s) in "
                f"{AUTOSCALE_WAIT_S / 60:.0f} minutes; see `ray status` and the autoscaler's log"
            )
        time.sleep(10)
    request_resources(bundles=[])  # from here on the trials themselves ask for nodes


def unreachable(address: str, timeout_s: float = 5.0) -> str | None:
    """Why a Ray GCS address (host:port) does not answer, or None when it does."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as err:
        return str(err)
    return None


def running_local_cluster() -> str | None:
    """The address of the Ray cluster last started on this machine, if it is still answering."""
    path = Path(os.environ.get("RAY_TMPDIR", tempfile.gettempdir())) / "ray" / "ray_current_cluster"
    try:
        address = path.read_text().strip()
    except OSError:
        return None
    return address if address and not unreachable(address, timeout_s=2.0) else None


def preflight(uri: str, storage_root: str, spec: SweepSpec, checked_here: bool) -> None:
    """Check that every node can run a trial before any starts (`grokbench doctor`), unless the only node is this
    machine and `check_data_here` has checked it."""
    import ray

    if checked_here and sum(1 for n in ray.nodes() if n["Alive"]) < 2:
        return
    trial = example_trial(spec).to_dict()
    findings = check_cluster(uri, storage_root, trial, spec.resources.cpus_per_trial, spec.resources.gpus_per_trial)
    failed = [f for f in findings if not f.ok]
    if failed:
        raise SweepError("the cluster cannot run this sweep:\n" + format_findings(failed))
