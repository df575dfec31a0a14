"""Planning a benchmark, without Ray or a tracking store: its tuning trials, their draws and seeds, the
confirmation trials, and what it costs.

Every function here is a function of the suite (and, for the confirmation, of the winners the results name), so a
resumed benchmark re-plans exactly the same trials; only `seconds_per_update` measures anything, on this machine.

- Draws: each (workload, arm, ruleset, study) has its own Optuna `QMCSampler` (scrambled Sobol), seeded from the
  suite's name and those coordinates. The installed Optuna (5.0) samples a study's first trial at random unless its
  search space is known, so the sampler is told the space (`FixedSpaceQMC`): every draw is a point of the sequence.
- Seeds: tuning trial t of study s has seed TUNING_SEED_BASE + s·T + t: distinct within an arm's studies on a
  workload and ruleset, and the same for every arm (paired comparisons: each arm's k-th trial starts from the same
  initialisation and data order). Confirmation seeds are 0 … C − 1, below every tuning seed.
- Budgets: a workload's budget in updates becomes epochs of its task (updates per epoch = ⌈train points / batch
  size⌉); a budget that is not a whole number of epochs rounds up, to the next whole epoch.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import optuna
from optuna.distributions import FloatDistribution

from grokbench.benchmark.score import stop_factor
from grokbench.benchmark.suite import TUNING_SEED_BASE, Coordinates, Suite
from grokbench.config import ConfigError, TrialConfig
from grokbench.progress import counted, duration
from grokbench.sweep.errors import SweepError
from grokbench.sweep.keys import trial_key
from grokbench.sweep.plan import TRIAL_STARTUP_S, gpu_here, local_concurrency, placed, seconds_per_epoch
from grokbench.sweep.spec import Range
from grokbench.tasks import TASKS


@dataclass(frozen=True)
class PlannedTrial:
    coords: Coordinates
    config: TrialConfig  # resolved, with the workload's budget in epochs
    drawn: dict[str, float] = field(default_factory=dict)  # the tuned settings' values (none: nothing to tune)


# ---- draws and seeds ------------------------------------------------------------------------------------------------


def sampler_seed(suite: Suite, workload: str, arm: str, ruleset: str, study: int) -> int:
    """The scramble seed of one study's sampler, from the suite's name and the study's coordinates."""
    text = json.dumps([suite.name, workload, arm, ruleset, study])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


class FixedSpaceQMC(optuna.samplers.QMCSampler):
    """QMCSampler told its search space, so that it samples a study's first trial from the sequence too (Optuna
    5.0 infers the space from a first trial that its independent sampler draws at random)."""

    def __init__(self, space: dict[str, FloatDistribution], **kwargs: Any):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            super().__init__(**kwargs)
        self._space = space

    def infer_relative_search_space(self, study: optuna.Study, trial: Any) -> dict[str, FloatDistribution]:
        return dict(self._space)


def draws(space: dict[str, Range], count: int, seed: int) -> list[dict[str, float]]:
    """The first `count` points of a scrambled Sobol sequence over `space` (a log range on a log scale), its
    coordinates in the order of `space`'s keys; `count` empty draws for an empty space."""
    if not space:
        return [{} for _ in range(count)]
    distributions = {k: FloatDistribution(r.low, r.high, log=r.log) for k, r in space.items()}
    sampler = FixedSpaceQMC(distributions, qmc_type="sobol", scramble=True, seed=seed)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "A new study created in memory" per study
    try:
        study = optuna.create_study(sampler=sampler)
        return [study.ask(distributions).params for _ in range(count)]
    finally:
        optuna.logging.set_verbosity(verbosity)


def tuning_seed(study: int, trial: int, trials_per_study: int) -> int:
    return TUNING_SEED_BASE + study * trials_per_study + trial


def confirmation_seeds(suite: Suite) -> list[int]:
    return list(range(suite.confirmation_seeds))


# ---- trials ---------------------------------------------------------------------------------------------------------


def updates_per_epoch(cfg: TrialConfig) -> int:
    """Optimizer updates in one epoch of a resolved config: the training set in batches, the last one partial."""
    return math.ceil(TASKS[cfg.task].train_size(cfg) / cfg.batch_size)


def budget_epochs(updates: int, cfg: TrialConfig) -> int:
    """The epochs that hold `updates` updates, rounded up to a whole epoch."""
    return math.ceil(updates / updates_per_epoch(cfg))


def planned(suite: Suite, coords: Coordinates, drawn: dict[str, float], seed: int) -> PlannedTrial:
    try:
        cfg = suite.config(coords.workload, coords.arm, drawn, seed)
    except ConfigError as err:
        raise SweepError(f"{suite.path}: arms.{coords.arm}: {coords} with {drawn}: {err}") from None
    epochs = budget_epochs(suite.workloads[coords.workload].budget_updates, cfg)
    return PlannedTrial(coords, cfg.replace(max_epochs=epochs), dict(drawn))


def tuning_trials(suite: Suite) -> list[PlannedTrial]:
    """Every tuning trial: workload × arm × ruleset × study × trial, but for the arms a workload's task refuses;
    ordered by workload, ruleset, study and trial, the arms side by side (a benchmark stopped early has whole
    comparisons)."""
    out = []
    for workload, arm in suite.applicable():
        for ruleset, rules in suite.rulesets.items():
            space = suite.space(workload, arm, ruleset)
            for study in range(rules.studies):
                seed = sampler_seed(suite, workload, arm, ruleset, study)
                for trial, drawn in enumerate(draws(space, rules.trials, seed)):
                    coords = Coordinates(workload, arm, ruleset, "tuning", study, trial)
                    out.append(planned(suite, coords, drawn, tuning_seed(study, trial, rules.trials)))
    order = [{name: i for i, name in enumerate(names)} for names in (suite.workloads, suite.rulesets, suite.arms)]
    return _distinct(suite, sorted(out, key=lambda p: _rank(p.coords, *order)))


def _distinct(suite: Suite, trials: list[PlannedTrial]) -> list[PlannedTrial]:
    """The trials, each its own computation: two with one trial key (two workloads alike but for their budgets, two
    arms with the same settings, an open ruleset that draws nothing) would share one run and one outcome."""
    seen: dict[str, Coordinates] = {}
    for p in trials:
        first = seen.setdefault(trial_key(p.config), p.coords)
        if first != p.coords:
            raise SweepError(
                f"{suite.path}: {_where(first)} and {_where(p.coords)} are the same trial (the same settings and "
                "seed): make the workloads, arms or rulesets differ in what they train"
            )
    return trials


def _where(c: Coordinates) -> str:
    return f"{c.arm} on {c.workload} ({c.ruleset}, study {c.study}, trial {c.trial})"


def _rank(c: Coordinates, workloads: dict[str, int], rulesets: dict[str, int], arms: dict[str, int]) -> tuple:
    """In the file's order: workload, ruleset, study, trial, then arm."""
    return workloads[c.workload], rulesets[c.ruleset], c.study, c.trial, arms[c.arm]


def confirmation_trials(suite: Suite, winners: Iterable[PlannedTrial]) -> list[PlannedTrial]:
    """For each (workload, arm, ruleset), its winner (the fastest trial of its median study, from the results)
    rerun at its drawn settings on every confirmation seed, with the full budget."""
    out: list[PlannedTrial] = []
    seen: set[tuple[str, str, str]] = set()
    for winner in winners:
        c = winner.coords
        key = (c.workload, c.arm, c.ruleset)
        if c.phase != "tuning" or key in seen:
            raise ValueError(f"one tuning trial per (workload, arm, ruleset) wins; got {c}")
        seen.add(key)
        for i, seed in enumerate(confirmation_seeds(suite)):
            out.append(planned(suite, replace(c, phase="confirmation", trial=i), winner.drawn, seed))
    return out


def trial_count(suite: Suite) -> int:
    """Σ over the workloads, the arms they can run and the rulesets of (studies × trials + confirmation seeds)."""
    per_pair = sum(r.studies * r.trials + suite.confirmation_seeds for r in suite.rulesets.values())
    return per_pair * len(suite.applicable())


# ---- cost -----------------------------------------------------------------------------------------------------------


def seconds_per_update(suite: Suite, measure_updates: int = 20) -> dict[tuple[str, str], float]:
    """(workload, arm) → seconds per update, evaluation included, measured here on the arm's paper-ruleset trial
    at its thread count (as `grokbench sweep --dry-run` times an epoch), over at least `measure_updates` updates;
    a workload's arms are timed side by side, taking turns, so that their ratios hold where the machine drifts."""
    configs: dict[str, dict[str, TrialConfig]] = {}
    for workload, arm in suite.applicable():
        cfg = placed(suite.config(workload, arm, {}, seed=0), suite)
        if cfg.device == "cuda" and not gpu_here():
            cfg = cfg.replace(device="cpu")  # a cluster's GPU trials, timed on this machine's CPU
        configs.setdefault(workload, {})[arm] = cfg
    out = {}
    for workload, arms in configs.items():
        epochs = max(max(1, math.ceil(measure_updates / updates_per_epoch(cfg))) for cfg in arms.values())
        for arm, seconds in seconds_per_epoch(arms, epochs=epochs).items():
            out[workload, arm] = seconds / updates_per_epoch(arms[arm])
    return out


@dataclass(frozen=True)
class Estimate:
    """CPU-seconds (cpus per trial × seconds) of the whole benchmark: every trial its full budget (`full`), or the
    tuning trials stopped at f × r_max × the expected best (`stopped`; f: `score.stop_factor`, 2 for an even number
    of studies); training and evaluation only."""

    full: float
    stopped: float


def estimate(suite: Suite, per_update: dict[tuple[str, str], float]) -> Estimate:
    full = stopped = 0.0
    for workload, arm in suite.applicable():
        w = suite.workloads[workload]
        cost = per_update[workload, arm] * suite.resources.cpus_per_trial
        for ruleset, rules in suite.rulesets.items():
            tuning = rules.studies * rules.trials
            limit = stop_factor(rules.studies) * suite.r_max * w.expected_best_updates[ruleset]
            cut = min(w.budget_updates, limit)
            full += cost * w.budget_updates * (tuning + suite.confirmation_seeds)
            stopped += cost * (cut * tuning + w.budget_updates * suite.confirmation_seeds)
    return Estimate(full, stopped)


# ---- the dry run ----------------------------------------------------------------------------------------------------


DRY_RUN_UPDATES = 20  # updates each (workload, arm) is timed over for a dry run's estimate


def dry_run(suite: Suite, out=None, measure_updates: int = DRY_RUN_UPDATES) -> int:
    """Print the plan and, unless `measure_updates` is 0, the cost estimate from that many updates timed here."""
    out = out or sys.stdout
    print(f"benchmark {suite.name} ({suite.path}): {suite.description}", file=out)
    _print_workloads(suite, out)
    _print_arms(suite, out)
    for name, rules in suite.rulesets.items():
        shared = ", ".join(f"{k} in [{r.low:g}, {r.high:g}]{' log' if r.log else ''}" for k, r in rules.ranges.items())
        print(
            f"ruleset {name}: {rules.studies} studies of {counted(rules.trials, 'trial')}"
            + (f"; shared {shared}" if shared else ""),
            file=out,
        )
    seeds = confirmation_seeds(suite)
    print(f"confirmation: {len(seeds)} seeds ({seeds[0]}–{seeds[-1]}); tuning seeds from {TUNING_SEED_BASE}", file=out)
    for (workload, arm), reason in suite.refused.items():
        print(f"n/a: {arm} on {workload} ({reason})", file=out)
    tuning_trials(suite)  # a suite whose trials collide is refused here, not when it runs
    count = trial_count(suite)
    terms = " + ".join(
        f"{n} ({r.studies} × {r.trials} + {suite.confirmation_seeds})" for n, r in suite.rulesets.items()
    )
    print(
        f"trials: {count} = {len(suite.applicable())} (workload, arm) pairs × [{terms}]: studies × trials + "
        "confirmation seeds, summed over the workloads, the arms each can run and the rulesets",
        file=out,
    )
    if not measure_updates:
        print("no estimate: nothing timed (--measure-updates 0)", file=out)
        return 0
    if suite.resources.cpus_per_trial > (os.cpu_count() or 1):  # timing at that many torch threads crashes
        print(f"no estimate: a trial needs more CPUs than this machine has ({os.cpu_count()})", file=out)
        return 0
    if suite.resources.gpus_per_trial > 0 and not gpu_here():
        print("this machine has no GPU: the trials are timed on its CPU, and the estimate is of CPU time", file=out)
    print(f"measuring seconds per update on this machine ({os.cpu_count()} CPUs) ...", file=out, flush=True)
    per_update = seconds_per_update(suite, measure_updates)
    for workload in suite.workloads:
        rates = ", ".join(f"{a} {1e3 * s:.2f}" for (w, a), s in per_update.items() if w == workload)
        print(f"  ms per update on {workload} (evaluation included): {rates}", file=out)
    _print_estimate(suite, estimate(suite, per_update), count, out)
    return 0


def _print_workloads(suite: Suite, out) -> None:
    for name, w in suite.workloads.items():
        arm = next((a for w_, a in suite.applicable() if w_ == name), None)
        if arm is None:
            print(f"workload {name}: {w.task}; it refuses every arm", file=out)
            continue
        cfg = suite.config(name, arm, {}, seed=0)
        per_epoch, epochs = updates_per_epoch(cfg), budget_epochs(w.budget_updates, cfg)
        rounded = (
            f", rounded up from {w.budget_updates / per_epoch:g}" if epochs * per_epoch != w.budget_updates else ""
        )
        settings = "".join(f" {k}={v}" for k, v in w.settings.items())
        expected = ", ".join(f"{r} {n:,}" for r, n in w.expected_best_updates.items())
        ranges = "".join(f"; open {k} in [{r.low:g}, {r.high:g}]" for k, r in w.ranges.items())
        print(
            f"workload {name}: {w.task}{settings}; budget {w.budget_updates:,} updates = {epochs:,} epochs of "
            f"{per_epoch}{rounded}; expected best {expected} updates{ranges}",
            file=out,
        )


def arm_rows(suite: Suite) -> list[list[str]]:
    """A header and a row per arm: its method and fixed settings, and what it tunes under each ruleset (on any
    workload): the dry run's table and the docs' (docs/benchmark.md)."""
    rows = [["arm", "method and fixed settings", *(f"tunes under {r}" for r in suite.rulesets)]]
    for name, arm in suite.arms.items():
        fixed = ", ".join([arm.method, *(f"{k}={v}" for k, v in arm.own.settings.items())])
        tuned = [sorted({k for w in suite.workloads for k in suite.space(w, name, r)}) for r in suite.rulesets]
        rows.append([name, fixed, *(", ".join(keys) or "nothing" for keys in tuned)])
    return rows


def _print_arms(suite: Suite, out) -> None:
    rows = arm_rows(suite)
    widths = [max(len(row[i]) for row in rows) + 2 for i in range(len(rows[0]))]
    for row in rows:
        print("  " + "".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(), file=out)


def _print_estimate(suite: Suite, cost: Estimate, count: int, out) -> None:
    concurrency = max(local_concurrency(suite), 1)
    hours = lambda s: s / 3600  # noqa: E731
    wall = lambda s: duration(s / suite.resources.cpus_per_trial / concurrency)  # noqa: E731
    print(
        f"estimate (training and evaluation, at the rates above): without the r_max stopper "
        f"{hours(cost.full):.2f} CPU-hours (every trial its full budget); with it {hours(cost.stopped):.2f} "
        f"CPU-hours (each tuning trial to min(budget, f × r_max × expected best), r_max = {suite.r_max:g}, f = 2 "
        "for an even number of studies, else 1; each confirmation trial its full budget)",
        file=out,
    )
    print(
        f"  wall time on this machine, {concurrency} at a time: about {wall(cost.full)} without the stopper, "
        f"{wall(cost.stopped)} with it; plus ≈{TRIAL_STARTUP_S:.0f} s to start each of the {count} trials; "
        "an upper bound, as trials stop when they reach the target",
        file=out,
    )
