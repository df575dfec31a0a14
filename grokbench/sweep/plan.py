"""Planning a sweep, without Ray or a tracking store: which trials run, which are skipped, and how long it takes.

Everything here is a function of the sweep and of what is already done, except `seconds_per_epoch`, which times a
few epochs of each method on this machine for the estimate.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from grokbench.config import TrialConfig
from grokbench.events import stop_event
from grokbench.machine import label, this_machine
from grokbench.progress import counted, duration
from grokbench.sweep.keys import FINAL_STATUSES, trial_key
from grokbench.sweep.mlflow_store import TrialRecord
from grokbench.sweep.spec import SweepSpec, fixed_settings
from grokbench.tasks import TASKS

# measured on a 2-core CPU (grokbench bench-sweep / bench-nodes): Ray, Tune and the MLflow store before the first
# trial; a trial's worker process and data before its first epoch
SWEEP_STARTUP_S = 20.0
TRIAL_STARTUP_S = 8.0
MEASURE_EPOCHS = 2  # timed per method for a dry run's estimate, after one of warm-up
TIMING_ROUNDS = 5  # turns the configs timed together take, each a share of the epochs


def placed(cfg: TrialConfig, spec: SweepSpec) -> TrialConfig:
    """Where and how a trial runs: torch threads = its CPUs, and a GPU when it was given one. The data directory
    stays as given (absolute) or unset: then each node uses GROKBENCH_DATA, which the driver passes on."""
    threads = max(int(spec.resources.cpus_per_trial), 1)
    device = "cuda" if spec.resources.gpus_per_trial > 0 else "cpu"
    data_dir = str(Path(cfg.data_dir).expanduser().resolve()) if cfg.data_dir else None
    return cfg.replace(threads=threads, device=device, data_dir=data_dir)


def grid_entries(
    spec: SweepSpec, trials: list[TrialConfig], fault: dict | None, continued: dict[str, dict[str, str]] | None = None
) -> list[dict[str, Any]]:
    """Tune's config of each trial; one that continues a stored trial carries its run and final checkpoint."""
    continued = continued or {}
    return [
        {
            "config": placed(cfg, spec).to_dict(),
            "checkpoint_every": spec.checkpoint_every,
            "fault": fault,
            "continue": continued.get(trial_key(cfg)),
        }
        for cfg in trials
    ]


@dataclass(frozen=True)
class StoredTrial(TrialRecord):
    """The planner's view of what the store holds of a trial (`TrackingStore.stored_trials`): whether it is done,
    asks for more, or can go on from a checkpoint."""

    @classmethod
    def from_record(cls, record: TrialRecord) -> StoredTrial:
        return cls(**{f.name: getattr(record, f.name) for f in fields(record)})

    def interrupted_continuation(self) -> bool:
        """A run whose larger budget a sweep began but did not finish (stopped, or failed past its retries): its
        latest checkpoint is where it goes on."""
        return self.prior_status is not None and self.status in ("running", "failed")

    def wants_more(self, cfg: TrialConfig) -> bool:
        """Whether `cfg`'s budget asks for more than it did: a trial that has not settled given more epochs, one
        that settled (grokked, or ended by its criterion's stopping rule) asked to train further past it. Diverged
        and failed trials have nothing to continue."""
        if self.status not in ("censored", "grokked"):
            return False
        return min(cfg.max_epochs, self.settled_epoch(cfg) + cfg.epochs_after_grok) > self.epochs

    def settled_epoch(self, cfg: TrialConfig) -> float:
        """Where the trial stops training when not asked to go further, as `GrokEvents.settled` has it: where its
        criterion's stopping rule held (a polynomial run that converged), else at grokking and every further event
        of its task (polynomial's `grok_strict`); one still to come asks for the whole budget."""
        criterion = TASKS[cfg.task].criterion(cfg)
        ends_at = stop_event(criterion)
        if ends_at in self.event_epochs:
            return self.event_epochs[ends_at]
        further = criterion.further_events()
        if self.epochs_to_grok is None or any(name not in self.event_epochs for name in further):
            return math.inf
        return max([self.epochs_to_grok, *(self.event_epochs[name] for name in further)])

    def can_continue(self) -> bool:
        """A final checkpoint to continue from (one on shared storage is trusted; a local one must exist)."""
        return bool(self.checkpoint) and ("://" in self.checkpoint or Path(self.checkpoint).is_dir())


@dataclass(frozen=True)
class GridPlan:
    """Which of a grid's trials the store settles: `skipped` (key → sweep id) need nothing more; `continued` (key
    → {"run_id", "checkpoint", "sweep_id"}) go on from their final checkpoint in their own run; the others run.
    `machines` (key → machine label) says where each skipped or continued trial ran."""

    skipped: dict[str, str]
    continued: dict[str, dict[str, str]]
    machines: dict[str, str] = field(default_factory=dict)

    def reused_elsewhere(self, here: str) -> Counter[str]:
        """Machine label → how many of the trials the sweep reuses ran on it, for every machine but `here`: their
        seconds do not pool with those of trials run here (their steps do)."""
        return Counter(machine for machine in self.machines.values() if machine != here)


def plan_grid(spec: SweepSpec, stored: Mapping[str, Any]) -> GridPlan:
    """Settle each of the grid's trials against what the store holds (an Optuna search proposes new settings each
    time: none of its trials is ever settled). A trial the store holds with a final outcome is kept, unless the
    sweep's budget asks for more: then it continues from its final checkpoint, or, without one (an imported run,
    say), runs again from the start. A continuation that was stopped or failed goes on from its latest one."""
    skipped: dict[str, str] = {}
    continued: dict[str, dict[str, str]] = {}
    machines: dict[str, str] = {}
    if spec.search:
        return GridPlan(skipped, continued)
    for cfg in spec.trials():
        key = trial_key(cfg)
        found = StoredTrial.from_record(stored[key]) if key in stored else None
        if found is None or (found.status not in FINAL_STATUSES and not found.interrupted_continuation()):
            continue
        if found.status in FINAL_STATUSES and not found.wants_more(cfg):
            skipped[key] = found.sweep_id
        elif found.can_continue():
            continued[key] = {
                "run_id": found.run_id,
                "checkpoint": found.checkpoint,
                "sweep_id": found.sweep_id,
                "from_epoch": found.epochs,
            }
        if key in skipped or key in continued:
            machines[key] = found.machine
    return GridPlan(skipped, continued, machines)


def total_trials(spec: SweepSpec) -> int:
    return len(spec.search.space) * spec.search.num_samples if spec.search else len(spec.trials())


def to_run(spec: SweepSpec, skipped: dict[str, str]) -> list[TrialConfig]:
    return [cfg for cfg in spec.trials() if trial_key(cfg) not in skipped] if not spec.search else []


def planned_count(spec: SweepSpec, trials: list[TrialConfig]) -> int:
    """How many trials this sweep runs: the grid's still to run, or every trial of a search."""
    return total_trials(spec) if spec.search else len(trials)


def search_example(spec: SweepSpec, method: str) -> TrialConfig:
    """A search's fixed settings for one method, the base's and the method's own (the searched ones take their
    defaults here); a search runs at one seed: the file's, or the first of --seeds."""
    from grokbench.resolve import config_from, resolve

    seed = spec.grid["seed"][0] if "seed" in spec.grid else spec.base.get("seed", 0)
    values = {
        **spec.base,
        **fixed_settings(spec.methods[method], spec.base.get("loss")),
        "seed": seed,
        "task": spec.task,
        "method": method,
        "max_epochs": spec.max_epochs,
    }
    return resolve(config_from(values))


def example_trial(spec: SweepSpec) -> TrialConfig:
    """One trial of the sweep, for the pre-flight checks."""
    return spec.trials()[0] if not spec.search else search_example(spec, next(iter(spec.search.space)))


def gpu_here() -> bool:
    import torch

    return torch.cuda.is_available()


def machine_here(spec: SweepSpec) -> dict[str, str]:
    """This machine as a trial of the sweep placed here records it (its device, its threads)."""
    cfg = placed(example_trial(spec), spec)
    return {**this_machine(cfg.device), "threads": str(cfg.threads)}


def local_concurrency(spec: SweepSpec, cpus: int | None = None) -> int:
    by_cpu = int((cpus or os.cpu_count() or 1) // spec.resources.cpus_per_trial)
    return min(by_cpu, spec.resources.max_concurrent) if spec.resources.max_concurrent else by_cpu


# ---- the time estimate --------------------------------------------------------------------------------------------


def representatives(spec: SweepSpec, trials: list[TrialConfig]) -> dict[str, TrialConfig]:
    """One placed trial per method, to time."""
    found: dict[str, TrialConfig] = {}
    for cfg in trials if not spec.search else [search_example(spec, m) for m in spec.search.space]:
        found.setdefault(cfg.method, placed(cfg, spec))
    return found


def seconds_per_epoch(configs: dict[str, TrialConfig], epochs: int = MEASURE_EPOCHS) -> dict[str, float]:
    """Per method (or any name for a config): seconds per epoch, evaluation included, measured here at the
    trial's thread count over `epochs` epochs after one epoch and one evaluation of warm-up. The configs take
    turns, in up to TIMING_ROUNDS rounds of a share of the epochs each, and each keeps the median of its rounds'
    training and evaluation times: a slow spell of the machine then falls on every config alike, so their ratios
    hold where the seconds drift (with two rounds the median is their mean)."""
    import torch

    from grokbench.train import Trial

    trials = {name: Trial(cfg) for name, cfg in configs.items()}
    for trial in trials.values():
        trial.train_epochs(1)
        trial.evaluate()
    rounds = min(epochs, TIMING_ROUNDS)
    chunks = [epochs // rounds + (i < epochs % rounds) for i in range(rounds)]
    train: dict[str, list[float]] = {name: [] for name in trials}
    evaluation: dict[str, list[float]] = {name: [] for name in trials}
    for chunk in chunks:
        for name, trial in trials.items():
            if trial.cfg.threads is not None:  # Trial() sets the process's threads: the last one built set them
                torch.set_num_threads(trial.cfg.threads)
            train[name].append(_timed(lambda trial=trial, chunk=chunk: trial.train_epochs(chunk)) / chunk)
            evaluation[name].append(_timed(trial.evaluate))
    return {
        name: statistics.median(train[name]) + statistics.median(evaluation[name]) / trials[name].cfg.eval_every
        for name in trials
    }


def _timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def estimate_seconds(
    spec: SweepSpec,
    trials: list[TrialConfig],
    concurrency: int,
    per_epoch: dict[str, float],
    continued: dict[str, dict] | None = None,
) -> float:
    """Upper bound on wall time: every trial runs its whole budget (a continued one what is left of it) at
    `per_epoch` seconds an epoch, `concurrency` at a time, each after its start-up, all after the sweep's."""
    continued = continued or {}
    if spec.search:
        total = sum(per_epoch[m] * spec.max_epochs * spec.search.num_samples for m in spec.search.space)
    else:
        total = sum(
            per_epoch[cfg.method] * (cfg.max_epochs - continued.get(trial_key(cfg), {}).get("from_epoch", 0))
            for cfg in trials
        )
    count = planned_count(spec, trials)
    total += TRIAL_STARTUP_S * count
    return SWEEP_STARTUP_S + total / max(min(concurrency, count), 1)


def dry_run(spec: SweepSpec, grid_plan: GridPlan, out=None, measure_epochs: int = MEASURE_EPOCHS) -> int:
    """Print the trials and, unless `measure_epochs` is 0, the cost estimate from that many epochs timed here."""
    out = out or sys.stdout
    print(f"sweep {spec.name} ({spec.path}): {spec.description}", file=out)
    if spec.search:
        for method, ranges in spec.search.space.items():
            text = ", ".join(f"{k} in [{r.low:g}, {r.high:g}]{' log' if r.log else ''}" for k, r in ranges.items())
            print(f"  optuna search · {method}: {spec.search.num_samples} trials, {text}", file=out)
    else:
        print(f"  {'trial key':<52}{'budget (epochs)':>16}", file=out)
        for cfg in spec.trials():
            key = trial_key(cfg)
            print(f"  {key:<52}{cfg.max_epochs:>16}{_settled(grid_plan, key)}", file=out)
    skipped, continued = grid_plan.skipped, grid_plan.continued
    if skipped:
        print(
            f"{len(skipped)} of them already have an outcome in the tracking store and will not run again "
            "(--rerun runs them anyway)",
            file=out,
        )
    if continued:
        print(f"{len(continued)} continue from their final checkpoints, in their own runs", file=out)
    warn_of_other_machines(grid_plan, label(machine_here(spec)), out)
    trials = to_run(spec, skipped)
    count = planned_count(spec, trials)
    if not count:
        print("nothing to run", file=out)
        return 0
    concurrency = local_concurrency(spec)
    resources = spec.resources
    text = f"{counted(count, 'trial')} to run, {resources.cpus_per_trial:g} CPU(s) and "
    text += f"{resources.gpus_per_trial:g} GPU(s) each"
    if resources.gpus_per_trial > 0 and not gpu_here():
        # a `ray up` cluster's head has no GPU: the trials run on its GPU workers, and a CPU here times nothing
        print(f"{text}; on the cluster's GPU nodes: this machine has no GPU, so no time estimate here", file=out)
        return 0
    if not concurrency:  # timing a trial at more threads than there are cores here measures nothing (or crashes)
        print(f"{text}; more CPUs than this machine has ({os.cpu_count()}): no time estimate here", file=out)
        return 0
    print(f"{text}; {concurrency} at a time on this machine ({os.cpu_count()} CPUs)", file=out)
    if not measure_epochs:
        print("no estimate: nothing timed (--measure-epochs 0)", file=out)
        return 0
    print("measuring seconds per epoch on this machine ...", file=out, flush=True)
    per_epoch = seconds_per_epoch(representatives(spec, trials), epochs=measure_epochs)
    seconds = estimate_seconds(spec, trials, concurrency, per_epoch, continued)
    rates = ", ".join(f"{m} {1e3 * s:.0f} ms" for m, s in per_epoch.items())
    print(f"per epoch (evaluation included): {rates}", file=out)
    print(
        f"estimated wall time: at most {duration(seconds)} here (every trial running its full budget of "
        f"{spec.max_epochs} epochs, plus ≈{SWEEP_STARTUP_S:.0f} s to start the sweep and ≈{TRIAL_STARTUP_S:.0f} s "
        "to start each trial; trials stop when they grok, so usually less)",
        file=out,
    )
    return 0


def warn_of_other_machines(grid_plan: GridPlan, here: str, out) -> None:
    elsewhere = grid_plan.reused_elsewhere(here)
    if not elsewhere:
        return
    machines = "; ".join(f"{machine} ({counted(n, 'trial')})" for machine, n in sorted(elsewhere.items()))
    print(
        f"warning: {counted(elsewhere.total(), 'trial')} it reuses ran on a machine other than this one or not "
        f"recorded (this one: {here}): "
        f"{machines}. Their steps compare with this sweep's, their seconds do not (--rerun runs them all here)",
        file=out,
    )


def _settled(grid_plan: GridPlan, key: str) -> str:
    if key in grid_plan.skipped:
        return f"   done (sweep {grid_plan.skipped[key]})"
    if key in grid_plan.continued:
        found = grid_plan.continued[key]
        return f"   continues from epoch {found['from_epoch']} (sweep {found['sweep_id']})"
    return ""
