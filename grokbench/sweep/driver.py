"""`grokbench sweep`: plan the trials, connect to Ray, run them as Tune trials, own their MLflow runs, resume.

Layout on disk: `<storage>/<sweep name>/<sweep id>/` holds `sweep.json` (what was planned, where it logs) and
one Tune experiment per search (`grid`, or one per method for an Optuna search). `--resume` reads them back.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grokbench.config import TrialConfig
from grokbench.sweep.keys import KEY_TAG, SWEEP_TAG, default_tracking_uri, experiment_name, trial_key
from grokbench.progress import duration
from grokbench.sweep.live import LiveView, summary_table
from grokbench.sweep.errors import EXIT_INTERRUPTED, SweepError, TrackingError
from grokbench.sweep.spec import SweepSpec, build_sweep
from grokbench.sweep.tracking import (
    TrialRuns, absolute_uri, check_reachable, finished_trials, patiently, prepare_experiment, retry_only_patiently,
    runs_link, sweep_summaries, tracking_patience_s,
)
from grokbench.sweep.storage import SweepStorage

PLAN_FILE = "sweep.json"
# measured on a 2-core CPU (grokbench bench-sweep / bench-nodes): Ray, Tune and the MLflow store before the first
# trial; a trial's worker process and data before its first epoch
SWEEP_STARTUP_S = 20.0
AUTOSCALER_CONFIG = Path("~/ray_bootstrap_config.yaml")  # `ray up` leaves it on the head
AUTOSCALE_WAIT_S = 900.0
TRIAL_STARTUP_S = 8.0
GRID = "grid"


@dataclass(frozen=True)
class SweepOptions:
    address: str | None = None
    tracking_uri: str | None = None
    storage: str | None = None
    resume: bool = False
    sweep_id: str | None = None
    dry_run: bool = False
    rerun: bool = False  # run trials that already have an outcome in the tracking store again
    overrides: dict[str, Any] = field(default_factory=dict)  # the command line's changes to the sweep file
    fault: dict[str, Any] | None = None  # tests only: kill each trial's worker once (see trainable._maybe_fail)


# ---- planning ---------------------------------------------------------------------------------------------------

def placed(cfg: TrialConfig, spec: SweepSpec) -> TrialConfig:
    """Where and how a trial runs: torch threads = its CPUs, and a GPU when it was given one. The data directory
    stays as given (absolute) or unset: then each node uses GROKBENCH_DATA, which the driver passes on."""
    threads = max(int(spec.resources.cpus_per_trial), 1)
    device = "cuda" if spec.resources.gpus_per_trial > 0 else "cpu"
    data_dir = str(Path(cfg.data_dir).expanduser().resolve()) if cfg.data_dir else None
    return cfg.replace(threads=threads, device=device, data_dir=data_dir)


def grid_entries(spec: SweepSpec, trials: list[TrialConfig], fault: dict | None) -> list[dict[str, Any]]:
    return [
        {"config": placed(cfg, spec).to_dict(), "checkpoint_every": spec.checkpoint_every, "fault": fault}
        for cfg in trials
    ]


def search_space(spec: SweepSpec, method: str, fault: dict | None) -> dict[str, Any]:
    from ray import tune

    config: dict[str, Any] = placed(_search_example(spec, method), spec).to_dict()
    for name, r in spec.search.space[method].items():
        config[name] = tune.loguniform(r.low, r.high) if r.log else tune.uniform(r.low, r.high)
    return {"trial": {"config": config, "checkpoint_every": spec.checkpoint_every, "fault": fault}}


def total_trials(spec: SweepSpec) -> int:
    return len(spec.search.space) * spec.search.num_samples if spec.search else len(spec.trials())


def already_done(spec: SweepSpec, uri: str) -> dict[str, str]:
    """The grid's trials that have an outcome in the tracking store, from any sweep (key → sweep id). The same key
    is the same computation (up to floating-point differences between machines), so a grid sweep runs only what
    the store lacks: a sweep extended by seeds, or started again after its checkpoints were lost, repeats nothing."""
    if spec.search:
        return {}  # an Optuna search proposes new settings each time
    done = patiently(lambda: finished_trials(uri, experiment_name(spec.name)), uri)
    return done_in_grid(spec, done)


def done_in_grid(spec: SweepSpec, done: dict[str, str]) -> dict[str, str]:
    keys = (trial_key(cfg.to_dict()) for cfg in spec.trials())
    return {key: done[key] for key in keys if key in done}


def known_outcomes(spec: SweepSpec, tracking_uri: str | None, out) -> dict[str, str]:
    """`already_done` for a dry run, which creates nothing and waits for nothing: an existing SQLite store, or a
    server that answers now; when neither, it says so."""
    uri = absolute_uri(tracking_uri or default_tracking_uri())
    if spec.search or (uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file()):
        return {}
    from mlflow.exceptions import MlflowException

    try:
        check_reachable(uri)
        done = finished_trials(uri, experiment_name(spec.name))
    except (TrackingError, MlflowException, OSError) as err:  # a dry run says what it could not check, goes on
        print(f"could not read the tracking store {uri} ({str(err).splitlines()[0]}); no trial is marked done",
              file=out)
        return {}
    return done_in_grid(spec, done)


def to_run(spec: SweepSpec, skipped: dict[str, str]) -> list[TrialConfig]:
    return [cfg for cfg in spec.trials() if trial_key(cfg.to_dict()) not in skipped] if not spec.search else []


def planned_count(spec: SweepSpec, trials: list[TrialConfig]) -> int:
    """How many trials this sweep runs: the grid's still to run, or every trial of a search."""
    return total_trials(spec) if spec.search else len(trials)


# ---- the time estimate --------------------------------------------------------------------------------------------

def estimate_seconds(spec: SweepSpec, trials: list[TrialConfig], concurrency: int) -> tuple[float, dict[str, float]]:
    """Upper bound on wall time: every trial runs its whole budget. Seconds per epoch (evaluation included) are
    measured here, once per method, at the trial's thread count."""
    from grokbench.train import Trial

    representative: dict[str, TrialConfig] = {}
    for cfg in trials if not spec.search else [_search_example(spec, m) for m in spec.search.space]:
        representative.setdefault(cfg.method, placed(cfg, spec))
    per_epoch: dict[str, float] = {}
    for method, cfg in representative.items():
        trial = Trial(cfg)
        trial.train_epochs(1)  # warm-up
        start = time.perf_counter()
        trial.train_epochs(2)
        train = (time.perf_counter() - start) / 2
        start = time.perf_counter()
        trial.evaluate()
        per_epoch[method] = train + (time.perf_counter() - start) / cfg.eval_every
    if spec.search:
        total = sum(per_epoch[m] * spec.max_epochs * spec.search.num_samples for m in spec.search.space)
    else:
        total = sum(per_epoch[cfg.method] * cfg.max_epochs for cfg in trials)
    count = planned_count(spec, trials)
    total += TRIAL_STARTUP_S * count
    return SWEEP_STARTUP_S + total / max(min(concurrency, count), 1), per_epoch


def _search_example(spec: SweepSpec, method: str) -> TrialConfig:
    """A search's fixed settings for one method (the searched ones take their defaults here); a search runs at
    one seed: the file's, or the first of --seeds."""
    from grokbench.config import resolve

    seed = spec.grid["seed"][0] if "seed" in spec.grid else spec.base.get("seed", 0)
    values = {**spec.base, "seed": seed, "task": spec.task, "method": method, "max_epochs": spec.max_epochs}
    return resolve(TrialConfig.from_dict(values))


def local_concurrency(spec: SweepSpec) -> int:
    by_cpu = int((os.cpu_count() or 1) // spec.resources.cpus_per_trial)
    return min(by_cpu, spec.resources.max_concurrent) if spec.resources.max_concurrent else by_cpu


def dry_run(spec: SweepSpec, skipped: dict[str, str], out=sys.stdout) -> int:
    print(f"sweep {spec.name} ({spec.path}): {spec.description}", file=out)
    if spec.search:
        for method, ranges in spec.search.space.items():
            text = ", ".join(f"{k} in [{r.low:g}, {r.high:g}]{' log' if r.log else ''}" for k, r in ranges.items())
            print(f"  optuna search · {method}: {spec.search.num_samples} trials, {text}", file=out)
    else:
        print(f"  {'trial key':<52}{'budget (epochs)':>16}", file=out)
        for cfg in spec.trials():
            key = trial_key(cfg.to_dict())
            done = f"   done (sweep {skipped[key]})" if key in skipped else ""
            print(f"  {key:<52}{cfg.max_epochs:>16}{done}", file=out)
    if skipped:
        print(f"{len(skipped)} of them already have an outcome in the tracking store and will not run again "
              "(--rerun runs them anyway)", file=out)
    trials = to_run(spec, skipped)
    if not planned_count(spec, trials):
        print("nothing to run", file=out)
        return 0
    concurrency = local_concurrency(spec)
    resources = spec.resources
    print(f"{planned_count(spec, trials)} trials to run, {resources.cpus_per_trial:g} CPU(s) and "
          f"{resources.gpus_per_trial:g} GPU(s) each; {concurrency} at a time on this machine ({os.cpu_count()} CPUs)",
          file=out)
    print("measuring seconds per epoch on this machine ...", file=out, flush=True)
    seconds, per_epoch = estimate_seconds(spec, trials, concurrency)
    rates = ", ".join(f"{m} {1e3 * s:.0f} ms" for m, s in per_epoch.items())
    print(f"per epoch (evaluation included): {rates}", file=out)
    print(f"estimated wall time: at most {duration(seconds)} here (every trial running its full budget of "
          f"{spec.max_epochs} epochs, plus ≈{SWEEP_STARTUP_S:.0f} s to start the sweep and ≈{TRIAL_STARTUP_S:.0f} s "
          "to start each trial; trials stop when they grok, so usually less)", file=out)
    return 0


# ---- Ray --------------------------------------------------------------------------------------------------------------

def connect_ray(address: str | None, spec: SweepSpec) -> None:
    """Join the cluster at `address` (or RAY_ADDRESS, or a running local one), else start a local Ray; then check
    that it has what one trial asks for. In-process callers (tests, notebooks) may have initialised Ray already."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    if address and address not in ("auto", "local") and not address.startswith("ray://"):
        error = unreachable(address)
        if error:
            raise SweepError(f"cannot reach the Ray cluster at {address} ({error}); start it (ray start --head, or "
                             "ray up cluster.yaml), or leave out --address to run on a local Ray")
    if not ray.is_initialized():
        data = os.environ.get("GROKBENCH_DATA")
        env = {"GROKBENCH_DATA": str(Path(data).expanduser().resolve())} if data else {}
        # no address: the cluster running on this machine, else a new local Ray. Ray's own "auto" would also
        # follow the address file of a cluster that died and retry it for minutes
        ray.init(address=address or running_local_cluster() or "local", runtime_env={"env_vars": env},
                 log_to_driver=False)
    cpus, gpus = spec.resources.cpus_per_trial, spec.resources.gpus_per_trial
    if nodes_fitting(cpus, gpus):
        return
    if not autoscaling():
        raise SweepError(f"no node of the Ray cluster has the {cpus:g} CPU(s) and {gpus:g} GPU(s) one trial asks "
                         "for; lower --cpus-per-trial / --gpus-per-trial, or add nodes")
    from ray.autoscaler.sdk import request_resources

    print(f"waiting for the autoscaler to add a node with {cpus:g} CPU(s) and {gpus:g} GPU(s) ...", file=sys.stderr)
    request_resources(bundles=[{"CPU": cpus, **({"GPU": gpus} if gpus else {})}])
    deadline = time.monotonic() + AUTOSCALE_WAIT_S
    while not nodes_fitting(cpus, gpus):
        if time.monotonic() > deadline:
            raise SweepError(f"the autoscaler added no node with {cpus:g} CPU(s) and {gpus:g} GPU(s) in "
                             f"{AUTOSCALE_WAIT_S / 60:.0f} minutes; see `ray status` and the autoscaler's log")
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


def nodes_fitting(cpus: float, gpus: float) -> list[dict]:
    import ray

    return [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) >= cpus
            and n["Resources"].get("GPU", 0) >= gpus]


def autoscaling() -> bool:
    """On the head of a `ray up` cluster: worker nodes come on demand."""
    return AUTOSCALER_CONFIG.expanduser().is_file()


# ---- running --------------------------------------------------------------------------------------------------------

def _tuner(spec: SweepSpec, name: str, storage: str, param_space: dict, callbacks: list, search_alg=None,
           num_samples: int = 1):
    from ray import tune
    from ray.tune import CheckpointConfig, FailureConfig

    from grokbench.sweep.trainable import OBJECTIVE, run_trial

    resources = {"cpu": spec.resources.cpus_per_trial, "gpu": spec.resources.gpus_per_trial}
    return tune.Tuner(
        tune.with_resources(run_trial, resources),
        param_space=param_space,
        tune_config=tune.TuneConfig(
            max_concurrent_trials=spec.resources.max_concurrent or None,
            search_alg=search_alg, num_samples=num_samples, reuse_actors=False,
            metric=OBJECTIVE if search_alg else None, mode="min" if search_alg else None,
        ),
        run_config=tune.RunConfig(
            name=name, storage_path=storage, verbose=0, callbacks=callbacks,
            failure_config=FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )


def _restore(spec: SweepSpec, path: str, callbacks: list):
    from ray import tune

    from grokbench.sweep.trainable import run_trial

    resources = {"cpu": spec.resources.cpus_per_trial, "gpu": spec.resources.gpus_per_trial}
    tuner = tune.Tuner.restore(path, tune.with_resources(run_trial, resources), resume_errored=True)
    # Tune would run the callbacks pickled when the sweep started; this driver's own report back to it (over Ray
    # Client the tuner lives remotely and keeps the pickled ones)
    if getattr(tuner, "_local_tuner", None) is not None:
        tuner._local_tuner.get_run_config().callbacks = callbacks
    return tuner


def _fit(spec: SweepSpec, experiments: list[tuple[str, Any]], sweep_dir: str, resume: bool, callbacks: list) -> list:
    """Run (or resume) each Tune experiment of the sweep in turn; returns their ResultGrids."""
    from ray import tune

    grids = []
    for name, make in experiments:
        path = f"{sweep_dir}/{name}"
        if resume and tune.Tuner.can_restore(path):
            tuner = _restore(spec, path, callbacks)
        else:
            tuner = make()
        grids.append(tuner.fit())
    return grids


def run_sweep(spec: SweepSpec, options: SweepOptions, out=sys.stdout) -> int:
    if options.rerun and options.resume:
        raise SweepError("--rerun starts a new sweep that runs every trial; it cannot be combined with --resume")
    retry_only_patiently()
    if options.dry_run:
        return dry_run(spec, {} if options.rerun else known_outcomes(spec, options.tracking_uri, out), out)
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # we log to MLflow, not CSV/JSON/TensorBoard
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # no configuration boxes: the live view is the output
    logging.getLogger("ray.tune").setLevel(logging.ERROR)  # the live view replaces Tune's own chatter
    tracking_patience_s()  # a bad value fails now, not at the first outage
    storage = SweepStorage(options.storage)

    if options.resume:
        sweep_id = _find_sweep(storage, spec.name, options.sweep_id)
        plan = storage.read_json(spec.name, sweep_id, PLAN_FILE)
        uri = plan["tracking_uri"]
        spec = build_sweep(plan["sweep_file"], plan.get("overrides", {}))  # the sweep as it was started
        if options.tracking_uri and absolute_uri(options.tracking_uri) != uri:
            raise SweepError(f"sweep {sweep_id} logs to {uri}; resume it without --tracking-uri or with that URI")
    else:
        uri = absolute_uri(options.tracking_uri or default_tracking_uri())
        sweep_id = options.sweep_id or f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        if storage.exists(spec.name, sweep_id):
            raise SweepError(f"sweep {sweep_id} already exists in {storage.uri(spec.name)}; use --resume to continue it")
    check_reachable(uri)
    if options.resume:
        skipped = plan.get("skipped", {})
    else:
        skipped = {} if options.rerun else already_done(spec, uri)
    trials = to_run(spec, skipped)
    planned = planned_count(spec, trials)
    if skipped:
        sweeps = ", ".join(sorted(set(skipped.values())))
        print(f"{len(skipped)} of {total_trials(spec)} trials already have an outcome in {uri} (sweep {sweeps}); "
              "they are not run again (--rerun runs them anyway)", file=out, flush=True)
    if not planned:
        print(f"nothing to run.\ntables:  python -m analysis.tables --tracking-uri {uri} --experiment {spec.name}",
              file=out)
        return 0
    connect_ray(options.address, spec)
    preflight(uri, storage, spec)
    experiment_id = prepare_experiment(uri, experiment_name(spec.name))
    if not options.resume:
        plan = {"sweep_id": sweep_id, "sweep_file": str(spec.path), "name": spec.name, "tracking_uri": uri,
                "experiment_id": experiment_id, "trials": planned, "skipped": skipped, "overrides": options.overrides}
        storage.write_json(plan, spec.name, sweep_id, PLAN_FILE)
    sweep_dir = storage.uri(spec.name, sweep_id)

    print(f"sweep {sweep_id}: {planned} trials → MLflow experiment {experiment_name(spec.name)} at {uri}",
          file=out, flush=True)
    runs = TrialRuns(uri, experiment_id, sweep_id)
    callbacks = [runs, LiveView(planned)]
    experiments = _experiments(spec, trials, sweep_dir, callbacks, options.fault)
    started = time.monotonic()
    try:
        grids = _fit(spec, experiments, sweep_dir, options.resume, callbacks)
    except KeyboardInterrupt:
        grids = None
    except Exception:
        if runs.failure:
            raise runs.failure from None
        raise
    summaries = patiently(lambda: sweep_summaries(uri, experiment_id, sweep_id), uri)
    errors = sum(1 for s in summaries if s["status"] == "failed")
    print(file=out)
    if summaries:
        print(summary_table(summaries), file=out)
    if spec.search and grids:
        _report_best(spec, grids, uri, experiment_id, sweep_id, out)
    unfinished = planned - len(summaries)
    print(f"\n{len(summaries) - errors} trials finished, {errors} failed, in {duration(time.monotonic() - started)}.",
          file=out)
    print(f"runs:    mlflow ui --backend-store-uri {uri}" if uri.startswith("sqlite") else f"runs:    {uri}", file=out)
    print(f"         then open {runs_link(uri, experiment_id)}", file=out)
    selection = f"--experiment {spec.name}" if skipped else f"--sweep {sweep_id}"  # the skipped ones are elsewhere
    print(f"tables:  python -m analysis.tables --tracking-uri {uri} {selection}", file=out)
    if grids is None or unfinished > 0:
        storage_flag = f" --storage {storage.root}" if options.storage else ""
        smoke_flag = " --smoke" if options.overrides.get("smoke") else ""
        print(f"{unfinished} trials unfinished; continue with: grokbench sweep {spec.path}{smoke_flag} --resume "
              f"--sweep-id {sweep_id}{storage_flag}  (the sweep's other flags are restored from its plan)", file=out)
        return EXIT_INTERRUPTED
    return 0 if errors == 0 else 1


def _experiments(spec: SweepSpec, trials: list[TrialConfig], sweep_dir: str, callbacks: list,
                 fault: dict | None) -> list[tuple[str, Any]]:
    from ray import tune

    if not spec.search:
        space = {"trial": tune.grid_search(grid_entries(spec, trials, fault))}
        return [(GRID, lambda: _tuner(spec, GRID, sweep_dir, space, callbacks))]

    def searched(method: str):
        from ray.tune.search.optuna import OptunaSearch

        return _tuner(spec, method, sweep_dir, search_space(spec, method, fault), callbacks,
                      search_alg=OptunaSearch(seed=spec.search.seed), num_samples=spec.search.num_samples)

    return [(method, lambda m=method: searched(m)) for method in spec.search.space]


def _report_best(spec: SweepSpec, grids: list, uri: str, experiment_id: str, sweep_id: str, out) -> None:
    import mlflow

    from grokbench.sweep.trainable import OBJECTIVE

    client = mlflow.MlflowClient(uri)
    print("\nbest setting per method (objective: seconds to grok; a trial that did not grok counts at its "
          "budget's seconds):", file=out)
    for method, grid in zip(spec.search.space, grids):
        finished = [r for r in grid if r.error is None and r.metrics and "summary" in r.metrics]
        if not finished:
            print(f"  {method:<12} no finished trial", file=out)
            continue
        best = min(finished, key=lambda r: r.metrics[OBJECTIVE])
        config = best.config["trial"]["config"]
        values = {k: config[k] for k in spec.search.space[method]}
        text = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        print(f"  {method:<12} {text}  ({best.metrics[OBJECTIVE]:.1f} s, {best.metrics['summary']['status']})", file=out)
        tags = {f"best.{sweep_id}.{method}.{k}": str(v) for k, v in values.items()}
        patiently(lambda tags=tags, key=trial_key(config): _mark_best(client, experiment_id, sweep_id, key, tags), uri)


def _mark_best(client, experiment_id: str, sweep_id: str, key: str, tags: dict[str, str]) -> None:
    """The best setting as experiment tags, and its run tagged; every write idempotent, so retried as a whole."""
    for tag, value in tags.items():
        client.set_experiment_tag(experiment_id, tag, value)
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{SWEEP_TAG}` = '{sweep_id}' and "
                                                             f"tags.`{KEY_TAG}` = '{key}'")
    for run in runs:
        client.set_tag(run.info.run_id, "grokbench.best", "true")


def _find_sweep(storage: SweepStorage, name: str, sweep_id: str | None) -> str:
    if sweep_id:
        if not storage.exists(name, sweep_id, PLAN_FILE):
            raise SweepError(f"no sweep {sweep_id} under {storage.uri(name)}")
        return sweep_id
    candidates = storage.children_with(PLAN_FILE, name)
    if not candidates:
        raise SweepError(f"nothing to resume: no sweep under {storage.uri(name)} (pass --storage if it was elsewhere)")
    return candidates[-1]


def preflight(uri: str, storage: SweepStorage, spec: SweepSpec) -> None:
    """On a cluster of several nodes, check every node can run a trial before any starts (`grokbench doctor`)."""
    import ray

    from grokbench.sweep.doctor import check_cluster, format_findings

    if sum(1 for n in ray.nodes() if n["Alive"]) < 2:
        return  # one node: the driver's own checks above cover it
    trial = example_trial(spec).to_dict()
    findings = check_cluster(uri, storage.root, trial, spec.resources.cpus_per_trial, spec.resources.gpus_per_trial)
    failed = [f for f in findings if not f.ok]
    if failed:
        raise SweepError("the cluster cannot run this sweep:\n" + format_findings(failed))


def example_trial(spec: SweepSpec) -> TrialConfig:
    return spec.trials()[0] if not spec.search else _search_example(spec, next(iter(spec.search.space)))

