"""`grokbench benchmark SUITE`: measure each arm's cost per update, run the tuning studies on Ray Tune with the r_max
stopper, then rerun each (workload, arm, ruleset)'s winning setting on the confirmation seeds; or resume one that
stopped.

Layout on disk: `<storage>/benchmark_<suite>/<benchmark id>/` holds `benchmark.json` (the suite file's hash, where
it logs, the cost measurement) and one Tune experiment per phase (`tuning`, `confirmation`). In MLflow, the
benchmark has one parent run (found by its id, so a resume reuses it) holding the suite file as run, the cost
measurement and the stamp of the machine, and every trial run is its child. A trial whose key already has an
outcome in the suite's experiment, from any benchmark of the suite, is not run again: it counts as it is.
The leaderboard is built from the runs afterwards (`analysis.leaderboard`), by the command line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from grokbench.benchmark.outcomes import DRAWN_TAG, TRIAL_TAG, latest_outcomes, winners
from grokbench.benchmark.plan import PlannedTrial, confirmation_trials, seconds_per_update, tuning_trials
from grokbench.benchmark.stopper import FinishedTrial, RMaxStopper
from grokbench.benchmark.suite import (
    BENCHMARK_PARENT,
    BENCHMARK_TAG,
    COSTS_ARTIFACT,
    SUITE_ARTIFACT,
    SUITE_HASH_TAG,
    Suite,
)
from grokbench.machine import as_tags, label, this_machine
from grokbench.progress import counted
from grokbench.sweep.cluster import connect_ray, on_this_machine
from grokbench.sweep.doctor import Finding, check_cluster, check_data, format_findings
from grokbench.sweep.driver import quiet_ray
from grokbench.sweep.errors import EXIT_INTERRUPTED, SweepError
from grokbench.sweep.execution import fit, tuner
from grokbench.sweep.keys import EXPERIMENT_PREFIX, FINAL_STATUSES, SWEEP_TAG, trial_key
from grokbench.sweep.live import LiveView
from grokbench.sweep.lock import experiment_lock
from grokbench.sweep.mlflow_store import TrackingStore, run_key
from grokbench.sweep.plan import placed
from grokbench.sweep.retry import patiently, retry_only_patiently, tracking_patience_s
from grokbench.sweep.storage import SweepStorage, check_name
from grokbench.sweep.tracking import TrialRuns
from grokbench.sweep.uri import check_reachable, tracking_uri

log = logging.getLogger("grokbench.benchmark.driver")

PLAN_FILE = "benchmark.json"
MEASURE_UPDATES = 200  # updates each (workload, arm) is timed over for its cost per update


@dataclass(frozen=True)
class BenchmarkOptions:
    address: str | None = None
    tracking_uri: str | None = None
    storage: str | None = None
    resume: bool = False
    benchmark_id: str | None = None
    measure_updates: int = MEASURE_UPDATES


@dataclass(frozen=True)
class Started:
    """Where a benchmark logs: what the leaderboard is built from."""

    uri: str
    experiment_id: str
    benchmark_id: str
    parent_run_id: str


def suite_hash(suite: Suite) -> str:
    return hashlib.sha256(suite.path.read_bytes()).hexdigest()


def run_benchmark(suite: Suite, options: BenchmarkOptions, out=None) -> tuple[int, Started | None]:
    """Run (or resume) the benchmark; (exit code, where it logged). Exit 0 when every trial of both phases has an
    outcome, EXIT_INTERRUPTED when it stopped before."""
    out = out or sys.stdout
    retry_only_patiently()
    tracking_patience_s()
    quiet_ray()
    storage = SweepStorage(options.storage)
    plan = _resumed_plan(suite, options, storage) if options.resume else _new_plan(suite, options, storage)
    with experiment_lock(plan["tracking_uri"], suite.experiment):
        tuning = tuning_trials(suite)
        started = _start(suite, options, storage, plan, tuning, out)
        done = _run_phases(suite, options, storage, started, plan, tuning, out)
        return _finish(suite, options, started, done, out), started


def _start(
    suite: Suite, options: BenchmarkOptions, storage: SweepStorage, plan: dict[str, Any], tuning: list, out
) -> Started:
    """Check this machine or the cluster, measure the costs (a new benchmark), then write: the plan, the parent."""
    uri, here = plan["tracking_uri"], on_this_machine(options.address)
    if here:  # before Ray starts or anything is written: a benchmark that cannot run leaves nothing behind
        _check_data(suite, tuning)
    connect_ray(options.address, suite)  # first: an address that does not answer costs no timing
    if "costs" not in plan:
        print(f"timing each arm's update on each workload ({options.measure_updates} updates each) ...", file=out)
        plan["costs"] = {"machine": label(this_machine("cpu")), "measure_updates": options.measure_updates} | {
            "seconds_per_update": _nested(seconds_per_update(suite, options.measure_updates))
        }
    if not here:
        _preflight(uri, storage.root, suite, tuning)
    store = TrackingStore(uri)
    experiment_id = patiently(lambda: store.prepare_experiment(suite.experiment), uri)
    storage.write_json(plan, _folder(suite), plan["benchmark_id"], PLAN_FILE)
    parent = _open_parent(store, experiment_id, suite, plan)
    print(f"benchmark {plan['benchmark_id']} → MLflow experiment {suite.experiment} at {uri}", file=out, flush=True)
    return Started(uri, experiment_id, plan["benchmark_id"], parent)


def _run_phases(
    suite: Suite,
    options: BenchmarkOptions,
    storage: SweepStorage,
    started: Started,
    plan: dict[str, Any],
    tuning: list[PlannedTrial],
    out,
) -> bool:
    """The tuning studies, then (once every tuning trial has an outcome) the confirmation; whether both ended."""
    phases = Phases(
        suite=suite,
        store=TrackingStore(started.uri),
        experiment_id=started.experiment_id,
        benchmark_id=started.benchmark_id,
        directory=storage.uri(_folder(suite), started.benchmark_id),
        runs=TrialRuns(started.uri, started.experiment_id, started.benchmark_id, started.parent_run_id),
        resume=options.resume,
        costs=_flat(plan["costs"]["seconds_per_update"]),
        out=out,
    )
    if not phases.run("tuning", tuning):
        return False
    chosen = winners(suite, _outcomes(phases.store, started.experiment_id, started.benchmark_id))
    by_coords = {p.coords: p for p in tuning}
    return phases.run("confirmation", confirmation_trials(suite, [by_coords[c] for c in chosen.values()]))


def _finish(suite: Suite, options: BenchmarkOptions, started: Started, done: bool, out) -> int:
    """End the parent run (and, interrupted, mark the unfinished trial runs KILLED); the exit code."""
    store = TrackingStore(started.uri)
    if not done:
        patiently(lambda: store.kill_unfinished(started.experiment_id, started.benchmark_id), started.uri)
    patiently(lambda: store.terminate(started.parent_run_id, "FINISHED" if done else "KILLED"), started.uri)
    if done:
        return 0
    storage_flag = f" --storage {options.storage}" if options.storage else ""
    print(
        f"continue with: grokbench benchmark {suite.path} --resume --benchmark-id {started.benchmark_id}{storage_flag}",
        file=out,
    )
    return EXIT_INTERRUPTED


def _folder(suite: Suite) -> str:
    """The suite's folder under the storage root: its experiment's name without the prefix."""
    return suite.experiment.removeprefix(EXPERIMENT_PREFIX)


def _new_plan(suite: Suite, options: BenchmarkOptions, storage: SweepStorage) -> dict[str, Any]:
    uri = tracking_uri(options.tracking_uri)
    benchmark_id = check_name(options.benchmark_id or f"{suite.name}-{time.strftime('%Y%m%d-%H%M%S')}", "benchmark id")
    if storage.exists(_folder(suite), benchmark_id):
        where = storage.uri(_folder(suite))
        raise SweepError(f"benchmark {benchmark_id} already exists in {where}; --resume continues it")
    check_reachable(uri)
    return {
        "benchmark_id": benchmark_id,
        "suite_file": str(suite.path),
        "suite_sha256": suite_hash(suite),
        "tracking_uri": uri,
    }


def _resumed_plan(suite: Suite, options: BenchmarkOptions, storage: SweepStorage) -> dict[str, Any]:
    folder = _folder(suite)
    found = storage.children_with(PLAN_FILE, folder)
    benchmark_id = options.benchmark_id or (found[-1] if found else None)
    if benchmark_id is None or benchmark_id not in found:
        where = storage.uri(folder)
        raise SweepError(f"nothing to resume: no benchmark {benchmark_id or ''} under {where} (--storage?)")
    plan = storage.read_json(folder, benchmark_id, PLAN_FILE)
    if plan["suite_sha256"] != suite_hash(suite):
        raise SweepError(
            f"{suite.path} changed since benchmark {benchmark_id} started; a benchmark runs one suite file to the "
            "end: restore the file, or start a new benchmark without --resume"
        )
    if options.tracking_uri and tracking_uri(options.tracking_uri) != plan["tracking_uri"]:
        raise SweepError(f"benchmark {benchmark_id} logs to {plan['tracking_uri']}; resume it with that URI")
    check_reachable(plan["tracking_uri"])
    return plan


def _examples(trials: list[PlannedTrial]) -> list:
    """One trial of each workload: what the data check loads."""
    first: dict[str, Any] = {}
    for p in trials:
        first.setdefault(p.coords.workload, p.config)
    return list(first.values())


def _check_data(suite: Suite, trials: list[PlannedTrial]) -> None:
    for cfg in _examples(trials):
        check, ok, detail, fix = check_data(placed(cfg, suite).to_dict())
        if not ok:
            finding = Finding("this machine", check, ok, detail, fix)
            raise SweepError("this machine cannot run this benchmark's trials:\n" + format_findings([finding]))


def _preflight(uri: str, storage_root: str, suite: Suite, trials: list[PlannedTrial]) -> None:
    cpus, gpus = suite.resources.cpus_per_trial, suite.resources.gpus_per_trial
    for cfg in _examples(trials):
        failed = [f for f in check_cluster(uri, storage_root, placed(cfg, suite).to_dict(), cpus, gpus) if not f.ok]
        if failed:
            raise SweepError("the cluster cannot run this benchmark:\n" + format_findings(failed))


def _nested(costs: dict[tuple[str, str], float]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for (workload, arm), seconds in costs.items():
        out.setdefault(workload, {})[arm] = seconds
    return out


def _flat(costs: dict[str, dict[str, float]]) -> dict[tuple[str, str], float]:
    return {(workload, arm): s for workload, arms in costs.items() for arm, s in arms.items()}


def _open_parent(store: TrackingStore, experiment_id: str, suite: Suite, plan: dict[str, Any]) -> str:
    """The benchmark's parent run, found or made, with the suite file as run, the costs and the stamp."""
    ident = {BENCHMARK_TAG: suite.name, SWEEP_TAG: plan["benchmark_id"]}
    name = plan["benchmark_id"]
    run_id = patiently(lambda: store.parent_run(experiment_id, BENCHMARK_PARENT, ident, name), store.uri)
    if SUITE_HASH_TAG in patiently(lambda: store.get_run(run_id), store.uri).data.tags:
        return run_id  # resumed: the stamp stays that of the start, where the costs were measured
    # the trials' thread count, not this driver's: the leaderboard's stamp says what the trials ran at
    machine = {**this_machine("cpu"), "threads": str(max(int(suite.resources.cpus_per_trial), 1))}
    patiently(lambda: store.log_text(run_id, suite.path.read_text(), SUITE_ARTIFACT), store.uri)
    patiently(lambda: store.log_text(run_id, json.dumps(plan["costs"], indent=2), COSTS_ARTIFACT), store.uri)
    tags = {SUITE_HASH_TAG: plan["suite_sha256"], **as_tags(machine)}  # last: the mark that the stamp is whole
    patiently(lambda: store.log_batch(run_id, tags=tags), store.uri)
    return run_id


def _outcomes(store: TrackingStore, experiment_id: str, benchmark_id: str):
    """This benchmark's trials: another benchmark of the suite (other code, another suite file, another machine)
    is a run of its own, never mixed into this one's studies, stopper or winners."""
    return latest_outcomes(patiently(lambda: store.trial_runs([experiment_id], benchmark_id), store.uri))


class StoredHistory:
    """The benchmark's tuning trials the store holds finished (picklable: a restored stopper calls it once, after
    a resume)."""

    def __init__(self, uri: str, experiment_id: str, benchmark_id: str):
        self.uri, self.experiment_id, self.benchmark_id = uri, experiment_id, benchmark_id

    def __call__(self) -> list[FinishedTrial]:
        store = TrackingStore(self.uri)
        finished = [o for o in _outcomes(store, self.experiment_id, self.benchmark_id) if o.finished]
        return [FinishedTrial(o.coords, o.steps_to_target) for o in finished]


def _entries(suite: Suite, trials: Iterable[PlannedTrial]) -> list[dict[str, Any]]:
    """Tune's config of each trial: its settings, and where it sits in the benchmark (for the stopper and its run)."""
    return [
        {
            "config": placed(p.config, suite).to_dict(),
            "checkpoint_every": suite.checkpoint_every,
            "benchmark": asdict(p.coords),
            "tags": {**p.coords.tags(suite.name), TRIAL_TAG: str(p.coords.trial), DRAWN_TAG: json.dumps(p.drawn)},
        }
        for p in trials
    ]


@dataclass
class Phases:
    """Runs a phase's trials as one Tune experiment under the benchmark's storage, recorded by one callback."""

    suite: Suite
    store: TrackingStore
    experiment_id: str
    benchmark_id: str
    directory: str  # the benchmark's folder under the storage root: one Tune experiment per phase in it
    runs: TrialRuns
    resume: bool
    costs: dict[tuple[str, str], float]
    out: Any

    def run(self, phase: str, trials: list[PlannedTrial]) -> bool:
        """Run the phase's trials that have no outcome yet; whether every trial of the phase has one after."""
        from ray import tune

        keys = {trial_key(p.config) for p in trials}
        settled = _settled_keys(self.store, self.experiment_id, self.benchmark_id)
        todo = [p for p in trials if trial_key(p.config) not in settled]
        print(f"{phase}: {counted(len(trials), 'trial')}, {len(todo)} to run", file=self.out, flush=True)
        if todo:
            space = {"trial": tune.grid_search(_entries(self.suite, todo))}
            stopper = self._stopper() if phase == "tuning" else None  # confirmation trials are never stopped

            def make():
                return tuner(self.suite, phase, self.directory, space, [self.runs, LiveView(len(todo))], stop=stopper)

            try:
                fit(self.suite, [(phase, make)], self.directory, self.resume)
            except KeyboardInterrupt:
                return False
        return not keys - _settled_keys(self.store, self.experiment_id, self.benchmark_id)

    def _stopper(self) -> RMaxStopper:
        studies = {name: r.studies for name, r in self.suite.rulesets.items()}
        history = StoredHistory(self.store.uri, self.experiment_id, self.benchmark_id)
        return RMaxStopper(self.costs, studies, self.suite.r_max, history=history)


def _settled_keys(store: TrackingStore, experiment_id: str, benchmark_id: str) -> set[str]:
    runs = patiently(lambda: store.trial_runs([experiment_id], benchmark_id), store.uri)
    return {run_key(r) for r in runs if r.data.tags.get("status") in FINAL_STATUSES}
