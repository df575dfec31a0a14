"""Planning a sweep, without Ray or a tracking store: which trials run, which are skipped, and how long it takes.

Everything here is a function of the sweep and of what is already done, except `seconds_per_epoch`, which times a
few epochs of each method on this machine for the estimate.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from grokbench.config import TrialConfig
from grokbench.progress import duration
from grokbench.sweep.keys import trial_key
from grokbench.sweep.spec import SweepSpec

# measured on a 2-core CPU (grokbench bench-sweep / bench-nodes): Ray, Tune and the MLflow store before the first
# trial; a trial's worker process and data before its first epoch
SWEEP_STARTUP_S = 20.0
TRIAL_STARTUP_S = 8.0


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


def total_trials(spec: SweepSpec) -> int:
    return len(spec.search.space) * spec.search.num_samples if spec.search else len(spec.trials())


def done_in_grid(spec: SweepSpec, done: dict[str, str]) -> dict[str, str]:
    """The grid's trials among `done` (trial key → sweep id). An Optuna search proposes new settings each time:
    none of its trials is ever done."""
    if spec.search:
        return {}
    keys = (trial_key(cfg.to_dict()) for cfg in spec.trials())
    return {key: done[key] for key in keys if key in done}


def to_run(spec: SweepSpec, skipped: dict[str, str]) -> list[TrialConfig]:
    return [cfg for cfg in spec.trials() if trial_key(cfg.to_dict()) not in skipped] if not spec.search else []


def planned_count(spec: SweepSpec, trials: list[TrialConfig]) -> int:
    """How many trials this sweep runs: the grid's still to run, or every trial of a search."""
    return total_trials(spec) if spec.search else len(trials)


def search_example(spec: SweepSpec, method: str) -> TrialConfig:
    """A search's fixed settings for one method (the searched ones take their defaults here); a search runs at
    one seed: the file's, or the first of --seeds."""
    from grokbench.config import resolve

    seed = spec.grid["seed"][0] if "seed" in spec.grid else spec.base.get("seed", 0)
    values = {**spec.base, "seed": seed, "task": spec.task, "method": method, "max_epochs": spec.max_epochs}
    return resolve(TrialConfig.from_dict(values))


def example_trial(spec: SweepSpec) -> TrialConfig:
    """One trial of the sweep, for the pre-flight checks."""
    return spec.trials()[0] if not spec.search else search_example(spec, next(iter(spec.search.space)))


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


def seconds_per_epoch(configs: dict[str, TrialConfig]) -> dict[str, float]:
    """Per method: seconds per epoch, evaluation included, measured here at the trial's thread count."""
    from grokbench.train import Trial

    per_epoch: dict[str, float] = {}
    for method, cfg in configs.items():
        trial = Trial(cfg)
        trial.train_epochs(1)  # warm-up
        start = time.perf_counter()
        trial.train_epochs(2)
        train = (time.perf_counter() - start) / 2
        start = time.perf_counter()
        trial.evaluate()
        per_epoch[method] = train + (time.perf_counter() - start) / cfg.eval_every
    return per_epoch


def estimate_seconds(spec: SweepSpec, trials: list[TrialConfig], concurrency: int,
                     per_epoch: dict[str, float]) -> float:
    """Upper bound on wall time: every trial runs its whole budget at `per_epoch` seconds an epoch, `concurrency`
    at a time, each after its start-up, all after the sweep's."""
    if spec.search:
        total = sum(per_epoch[m] * spec.max_epochs * spec.search.num_samples for m in spec.search.space)
    else:
        total = sum(per_epoch[cfg.method] * cfg.max_epochs for cfg in trials)
    count = planned_count(spec, trials)
    total += TRIAL_STARTUP_S * count
    return SWEEP_STARTUP_S + total / max(min(concurrency, count), 1)


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
    per_epoch = seconds_per_epoch(representatives(spec, trials))
    seconds = estimate_seconds(spec, trials, concurrency, per_epoch)
    rates = ", ".join(f"{m} {1e3 * s:.0f} ms" for m, s in per_epoch.items())
    print(f"per epoch (evaluation included): {rates}", file=out)
    print(f"estimated wall time: at most {duration(seconds)} here (every trial running its full budget of "
          f"{spec.max_epochs} epochs, plus ≈{SWEEP_STARTUP_S:.0f} s to start the sweep and ≈{TRIAL_STARTUP_S:.0f} s "
          "to start each trial; trials stop when they grok, so usually less)", file=out)
    return 0
