"""`grokbench sweep`: plan the trials, check the machine or cluster, run them as Tune trials whose MLflow runs the
driver owns, report; or resume a sweep that stopped.

Layout on disk: `<storage>/<sweep name>/<sweep id>/` holds `sweep.json` (what was planned, where it logs) and
one Tune experiment per search (`grid`, or one per method for an Optuna search). `--resume` reads them back.
In MLflow, a sweep that runs anything has one parent run (found by its sweep id, so a resume reuses it, and holding
the plan as `sweep.json`), and each trial run it creates is its child.
The jobs live apart: planning (`plan`), Ray (`cluster`), Tune (`execution`), the end of a sweep (`report`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from grokbench.progress import counted
from grokbench.sweep.cluster import check_data_here, connect_ray, on_this_machine, preflight
from grokbench.sweep.errors import EXIT_INTERRUPTED, SweepError
from grokbench.sweep.execution import experiments, fit
from grokbench.sweep.keys import SWEEP_TAG, experiment_name
from grokbench.sweep.live import LiveView
from grokbench.sweep.lock import experiment_lock
from grokbench.sweep.mlflow_store import SWEEP_PARENT, TrackingStore, store_errors
from grokbench.sweep.plan import MEASURE_EPOCHS, GridPlan, dry_run, plan_grid, planned_count, to_run, total_trials
from grokbench.sweep.report import report_sweep, report_unfinished
from grokbench.sweep.retry import patiently, retry_only_patiently, tracking_patience_s
from grokbench.sweep.spec import SweepSpec, build_sweep
from grokbench.sweep.storage import SweepStorage
from grokbench.sweep.tracking import TrialRuns
from grokbench.sweep.uri import check_reachable, check_readable, sqlite_path, tracking_uri

PLAN_FILE = "sweep.json"


@dataclass(frozen=True)
class SweepOptions:
    address: str | None = None
    tracking_uri: str | None = None
    storage: str | None = None
    resume: bool = False
    sweep_id: str | None = None
    dry_run: bool = False
    measure_epochs: int = MEASURE_EPOCHS  # a dry run's epochs timed per method (0: no estimate)
    rerun: bool = False  # run trials that already have an outcome in the tracking store again
    overrides: dict[str, Any] = field(default_factory=dict)  # the command line's changes to the sweep file
    fault: dict[str, Any] | None = None  # tests only: kill each trial's worker once (see trainable._maybe_fail)


def run_sweep(spec: SweepSpec, options: SweepOptions, out=None) -> int:
    out = out or sys.stdout  # looked up now: whoever redirected it since import (a notebook, a test) gets the text
    if options.rerun and options.resume:
        raise SweepError("--rerun starts a new sweep that runs every trial; it cannot be combined with --resume")
    retry_only_patiently()
    if options.dry_run:
        known = GridPlan({}, {}) if options.rerun else known_outcomes(spec, options.tracking_uri, out)
        return dry_run(spec, known, out, options.measure_epochs)
    quiet_ray()
    tracking_patience_s()  # a bad value fails now, not at the first outage
    storage = SweepStorage(options.storage)
    spec, sweep_id, uri, plan = _resumed(spec, options, storage) if options.resume else _new(spec, options, storage)
    with experiment_lock(uri, experiment_name(spec.name)):
        return _run_locked(spec, options, storage, sweep_id, uri, plan, out)


def _run_locked(
    spec: SweepSpec, options: SweepOptions, storage: SweepStorage, sweep_id: str, uri: str, plan: dict | None, out
) -> int:
    """The sweep, once this driver holds its experiment: what to run, Ray, the plan and the parent run, then the
    trials."""
    store = TrackingStore(uri)
    checked_here = on_this_machine(options.address)
    if checked_here:  # before anything is written: a sweep that cannot run leaves nothing behind
        check_data_here(spec)
    if plan:
        grid_plan = GridPlan(plan.get("skipped", {}), plan.get("continued", {}))
    else:
        grid_plan = GridPlan({}, {}) if options.rerun else settled_by_store(spec, store)
    skipped, continued = grid_plan.skipped, grid_plan.continued
    trials = to_run(spec, skipped)
    planned = planned_count(spec, trials)
    if skipped:
        sweeps = ", ".join(sorted(set(skipped.values())))
        print(
            f"{len(skipped)} of {total_trials(spec)} trials already have an outcome in {uri} (sweep {sweeps}); "
            "they are not run again (--rerun runs them anyway)",
            file=out,
            flush=True,
        )
    if continued:
        print(
            f"{len(continued)} of them continue from their final checkpoints, in their own runs (the sweep's "
            "budget asks for more than they ran)",
            file=out,
            flush=True,
        )
    if not planned:
        print(
            f"nothing to run.\ntables:  python -m analysis.tables --tracking-uri {uri} --experiment {spec.name}",
            file=out,
        )
        return 0
    connect_ray(options.address, spec)
    preflight(uri, storage.root, spec, checked_here)
    experiment_id = store.prepare_experiment(experiment_name(spec.name))
    if not plan:
        plan = {
            "sweep_id": sweep_id,
            "sweep_file": str(spec.path),
            "name": spec.name,
            "tracking_uri": uri,
            "experiment_id": experiment_id,
            "trials": planned,
            "skipped": skipped,
            "continued": continued,
            "overrides": options.overrides,
        }
        storage.write_json(plan, spec.name, sweep_id, PLAN_FILE)
    parent_run_id = open_parent_run(store, experiment_id, sweep_id, plan)
    print(
        f"sweep {sweep_id}: {counted(planned, 'trial')} → MLflow experiment {experiment_name(spec.name)} at {uri}",
        file=out,
        flush=True,
    )
    return _execute(spec, options, storage, store, experiment_id, sweep_id, parent_run_id, trials, grid_plan, out)


def open_parent_run(store: TrackingStore, experiment_id: str, sweep_id: str, plan: dict[str, Any]) -> str:
    """The sweep's parent run, found (a resumed sweep has one) or made, and running, with the plan as `sweep.json`."""
    run_id = patiently(
        lambda: store.parent_run(experiment_id, SWEEP_PARENT, {SWEEP_TAG: sweep_id}, sweep_id), store.uri
    )
    patiently(lambda: store.log_text(run_id, json.dumps(plan, indent=2, default=str), PLAN_FILE), store.uri)
    return run_id


def _execute(
    spec: SweepSpec,
    options: SweepOptions,
    storage: SweepStorage,
    store: TrackingStore,
    experiment_id: str,
    sweep_id: str,
    parent_run_id: str,
    trials: list,
    grid_plan: GridPlan,
    out,
) -> int:
    """Run the trials (until done or Ctrl-C), then report and end the parent run; the exit code says whether all of
    them finished."""
    planned = planned_count(spec, trials)
    sweep_dir = storage.uri(spec.name, sweep_id)
    callbacks = [TrialRuns(store.uri, experiment_id, sweep_id, parent_run_id), LiveView(planned)]
    started = time.monotonic()
    try:
        planned_experiments = experiments(spec, trials, sweep_dir, callbacks, options.fault, grid_plan.continued)
        grids = fit(spec, planned_experiments, sweep_dir, options.resume)
    except KeyboardInterrupt:
        grids = None
    summaries = patiently(lambda: store.sweep_summaries(experiment_id, sweep_id), store.uri)
    # the tables of the whole experiment when some trials were skipped: their runs belong to other sweeps
    elsewhere = grid_plan.skipped or grid_plan.continued
    selection = f"--experiment {spec.name}" if elsewhere else f"--sweep {sweep_id}"
    smoke = bool(options.overrides.get("smoke"))
    seconds = time.monotonic() - started
    errors = report_sweep(spec, summaries, grids, store, experiment_id, sweep_id, seconds, selection, out, smoke)
    unfinished = planned - len(summaries)
    interrupted = grids is None or unfinished > 0
    if interrupted:
        patiently(lambda: store.kill_unfinished(experiment_id, sweep_id), store.uri)
    patiently(lambda: store.terminate(parent_run_id, "KILLED" if interrupted else "FINISHED"), store.uri)
    if interrupted:
        report_unfinished(unfinished, spec, sweep_id, smoke, options.storage, out)
        return EXIT_INTERRUPTED
    return 0 if errors == 0 else 1


# Ray 2.5x warns on every new local cluster that it turned token authentication on, as it should; the notice
# says nothing a sweep's user acts on. Ray's other authentication warnings (a cluster running without it) still show.
RAY_TOKEN_NOTICE = "Token authentication is enabled for this Ray cluster."
RAY_TOKEN_LOGGER = "ray._private.authentication.authentication_token_setup"


def not_token_notice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(RAY_TOKEN_NOTICE)


def quiet_ray() -> None:
    """Before Ray starts: the live view is the sweep's output, not Ray's and Tune's notices."""
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # we log to MLflow, not CSV/JSON/TensorBoard
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # no configuration boxes: the live view is the output
    logging.getLogger("ray.tune").setLevel(logging.ERROR)  # the live view replaces Tune's own chatter
    logging.getLogger(RAY_TOKEN_LOGGER).addFilter(not_token_notice)  # the same filter is added once


def _new(spec: SweepSpec, options: SweepOptions, storage: SweepStorage) -> tuple[SweepSpec, str, str, None]:
    """(spec, sweep id, tracking URI, no plan yet) of a new sweep."""
    uri = tracking_uri(options.tracking_uri)
    sweep_id = options.sweep_id or f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if storage.exists(spec.name, sweep_id):
        raise SweepError(f"sweep {sweep_id} already exists in {storage.uri(spec.name)}; use --resume to continue it")
    check_reachable(uri)
    return spec, sweep_id, uri, None


def _resumed(spec: SweepSpec, options: SweepOptions, storage: SweepStorage) -> tuple[SweepSpec, str, str, dict]:
    """(spec, sweep id, tracking URI, plan) of the sweep to resume, as it was started."""
    sweep_id = _find_sweep(storage, spec.name, options.sweep_id)
    plan = storage.read_json(spec.name, sweep_id, PLAN_FILE)
    uri = plan["tracking_uri"]
    if options.tracking_uri and tracking_uri(options.tracking_uri) != uri:
        raise SweepError(f"sweep {sweep_id} logs to {uri}; resume it without --tracking-uri or with that URI")
    check_reachable(uri)
    return build_sweep(plan["sweep_file"], plan.get("overrides", {})), sweep_id, uri, plan


def _find_sweep(storage: SweepStorage, name: str, sweep_id: str | None) -> str:
    if sweep_id:
        if not storage.exists(name, sweep_id, PLAN_FILE):
            raise SweepError(f"no sweep {sweep_id} under {storage.uri(name)}")
        return sweep_id
    candidates = storage.children_with(PLAN_FILE, name)
    if not candidates:
        raise SweepError(f"nothing to resume: no sweep under {storage.uri(name)} (pass --storage if it was elsewhere)")
    return candidates[-1]


def settled_by_store(spec: SweepSpec, store: TrackingStore) -> GridPlan:
    """The grid's trials the tracking store settles, from any sweep of the experiment: those with an outcome are
    skipped, those whose outcome the sweep's larger budget reopens continue. The same key is the same computation
    (up to floating-point differences between machines), so a grid sweep runs only what the store lacks: a sweep
    extended by seeds or budget, or started again after its checkpoints were lost, repeats nothing."""
    path = sqlite_path(store.uri)
    if spec.search or (path and not path.is_file()):  # no store yet: nothing settled, and none made before it must
        return GridPlan({}, {})
    return plan_grid(spec, patiently(lambda: store.stored_trials(experiment_name(spec.name)), store.uri))


def known_outcomes(spec: SweepSpec, given_uri: str | None, out) -> GridPlan:
    """`settled_by_store` for a dry run, which creates nothing and waits for nothing: an existing store, or a
    server that answers now; when neither, it says so."""
    uri = tracking_uri(given_uri)
    path = sqlite_path(uri)
    if spec.search or (path and not path.is_file()):
        return GridPlan({}, {})
    try:
        check_readable(uri)
        stored = TrackingStore(uri).stored_trials(experiment_name(spec.name))
    except store_errors() as err:  # a dry run says what it could not check, goes on
        print(
            f"could not read the tracking store {uri} ({str(err).splitlines()[0]}); no trial is marked done", file=out
        )
        return GridPlan({}, {})
    return plan_grid(spec, stored)
