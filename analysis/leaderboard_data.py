"""A benchmark as the leaderboard reads it back from MLflow, and nothing else: its parent run's suite file, stamp
and cost measurement, and its trial runs' outcomes. Git and the local machine are never read, so a rebuild (on
another machine, from an imported archive) gives the same files.

- The suite is parsed from the parent run's `suite.yaml` artifact (the file as run), its stamp taken from the
  parent's tags, the modelled time's costs from its `costs.json`.
- A store may hold several benchmarks of a suite (several parent runs): the newest, unless one is named by its id.
- A confirmation seed's figures are read off its run (`ConfirmedSeed`): a seed that did not reach the target is
  censored at its last step and second, as `analysis.stats` takes it; a diverged one is counted apart.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from analysis.runs import AnalysisError
from grokbench.benchmark.outcomes import TrialOutcome, latest_outcomes
from grokbench.benchmark.suite import (
    BENCHMARK_PARENT,
    COSTS_ARTIFACT,
    SUITE_ARTIFACT,
    SUITE_HASH_TAG,
    Suite,
    load_suite,
)
from grokbench.machine import NOT_RECORDED, TAG_PREFIX
from grokbench.sweep.errors import SweepError
from grokbench.sweep.keys import EXPERIMENT_PREFIX, SWEEP_TAG, VERSION_TAG
from grokbench.sweep.mlflow_store import TrackingStore, store_errors
from grokbench.sweep.uri import check_readable

log = logging.getLogger(f"grokbench.{__name__}")

BENCHMARK_PREFIX = f"{EXPERIMENT_PREFIX}benchmark_"
# the stamp under the leaderboard: what each line says, and the parent run's tag it comes from
STAMP_TAGS = {
    "suite sha256": SUITE_HASH_TAG,
    "commit": VERSION_TAG,
    "CPU": f"{TAG_PREFIX}.cpu",
    "threads": f"{TAG_PREFIX}.threads",
}


@dataclass(frozen=True)
class Costs:
    """The benchmark's one measurement of each arm's seconds per update on each workload."""

    machine: str
    measure_updates: int
    per_update: Mapping[tuple[str, str], float]  # (workload, arm) → seconds


@dataclass(frozen=True)
class ConfirmedSeed:
    """One confirmation seed's run: figures at the target where it reached it, else at its last step."""

    seed: int  # its index among the confirmation seeds
    status: str
    reached: bool
    steps: float | None
    seconds: float | None  # measured training seconds
    delay_steps: float | None  # memorise → target, in steps (reached and memorised)
    before_memorising: bool
    final_test_acc: float | None
    machine: str


@dataclass(frozen=True)
class Benchmark:
    suite: Suite
    benchmark_id: str
    parent_run_id: str
    stamp: Mapping[str, str]  # STAMP_TAGS' lines → the parent's values
    costs: Costs
    outcomes: list[TrialOutcome]
    runs: Mapping[str, object]  # run id → the mlflow Run of each outcome

    def confirmed(self, workload: str, arm: str, ruleset: str) -> list[ConfirmedSeed]:
        """The finished confirmation seeds of one (workload, arm, ruleset), by seed."""
        return [
            confirmed_seed(o, self.runs[o.run_id])
            for o in self.outcomes
            if o.finished
            and o.coords.phase == "confirmation"
            and (o.coords.workload, o.coords.arm, o.coords.ruleset) == (workload, arm, ruleset)
        ]


def benchmark_experiment(name: str) -> str:
    """`smoke`, `benchmark_smoke` or `grokbench/benchmark_smoke` → the suite's experiment."""
    if name.startswith(EXPERIMENT_PREFIX):
        return name
    return EXPERIMENT_PREFIX + (name if name.startswith("benchmark_") else f"benchmark_{name}")


def read_benchmark(uri: str, experiment: str | None, benchmark_id: str | None) -> Benchmark:
    """The benchmark (the newest of the experiment's, or the one named) with everything the leaderboard shows."""
    check_readable(uri)
    store = TrackingStore(uri)
    try:
        name = _experiment(store, experiment, uri)
        experiment_id = store.experiment_id(name)
        parent = _parent(store, experiment_id, name, benchmark_id)
        bench_id = parent.data.tags.get(SWEEP_TAG, "?")
        texts = store.text_artifacts(parent.info.run_id, [SUITE_ARTIFACT, COSTS_ARTIFACT])
        runs = store.trial_runs([experiment_id], bench_id)
    except store_errors() as err:
        raise AnalysisError(f"cannot read the tracking store at {uri}: {str(err).splitlines()[0]}") from None
    suite = _suite(texts, bench_id, parent.data.tags)
    outcomes = latest_outcomes(runs)
    if not any(o.finished for o in outcomes):
        raise AnalysisError(f"no trial of benchmark {bench_id} has finished yet; wait for it (or check --benchmark-id)")
    by_id = {run.info.run_id: run for run in runs}
    return Benchmark(
        suite=suite,
        benchmark_id=bench_id,
        parent_run_id=parent.info.run_id,
        stamp={line: parent.data.tags.get(tag, "not recorded") for line, tag in STAMP_TAGS.items()},
        costs=_costs(texts, bench_id, suite),
        outcomes=outcomes,
        runs={o.run_id: by_id[o.run_id] for o in outcomes},
    )


def _experiment(store: TrackingStore, given: str | None, uri: str) -> str:
    known = sorted(n for n in store.grokbench_experiments() if n.startswith(BENCHMARK_PREFIX))
    if given is not None and benchmark_experiment(given) in known:
        return benchmark_experiment(given)
    if given is None and len(known) == 1:
        return known[0]
    wanted = f"no benchmark experiment {benchmark_experiment(given)}" if given else "several benchmark experiments"
    raise AnalysisError(
        f"{wanted} in {uri}; benchmark experiments there: {', '.join(known) or 'none (run grokbench benchmark)'}"
        + ("" if given else " (pass --experiment)")
    )


def _parent(store: TrackingStore, experiment_id: str, name: str, benchmark_id: str | None):
    parents = store.parent_runs(experiment_id, BENCHMARK_PARENT)
    ids = [p.data.tags.get(SWEEP_TAG, "?") for p in parents]
    chosen = [p for p, i in zip(parents, ids, strict=True) if benchmark_id in (None, i)]
    if not chosen:
        what = f"no benchmark {benchmark_id}" if benchmark_id else "no benchmark's parent run"
        raise AnalysisError(f"{what} in {name}; benchmarks there: {', '.join(ids) or 'none'}")
    return chosen[-1]  # oldest first: the newest


def _suite(texts: Mapping[str, str], bench_id: str, tags: Mapping[str, str]) -> Suite:
    """The suite as run, from the parent's artifact; an error names the benchmark, not the scratch file."""
    text = texts.get(SUITE_ARTIFACT)
    if text is None:
        raise AnalysisError(f"benchmark {bench_id}: its parent run has no {SUITE_ARTIFACT} artifact")
    recorded = tags.get(SUITE_HASH_TAG)
    if recorded and hashlib.sha256(text.encode()).hexdigest() != recorded:
        log.warning("benchmark %s: its %s does not hash to the %s recorded", bench_id, SUITE_ARTIFACT, SUITE_HASH_TAG)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / SUITE_ARTIFACT
        path.write_text(text)
        try:
            return load_suite(str(path))
        except SweepError as err:
            where = f"the {SUITE_ARTIFACT} of benchmark {bench_id}"
            raise AnalysisError(str(err).replace(str(path.resolve()), where).replace(str(path), where)) from None


def _costs(texts: Mapping[str, str], bench_id: str, suite: Suite) -> Costs:
    where = f"benchmark {bench_id}: its parent run's {COSTS_ARTIFACT}"
    try:
        raw = json.loads(texts[COSTS_ARTIFACT])
        per_update = {(w, a): float(s) for w, arms in raw["seconds_per_update"].items() for a, s in arms.items()}
        costs = Costs(str(raw["machine"]), int(raw["measure_updates"]), per_update)
    except KeyError as err:
        raise AnalysisError(f"{where}: missing {err}") from None
    except (ValueError, TypeError, AttributeError) as err:
        raise AnalysisError(f"{where}: not the cost measurement's form ({err})") from None
    missing = [pair for pair in suite.applicable() if pair not in costs.per_update]
    if missing:
        raise AnalysisError(f"{where}: no seconds per update for (workload, arm) {missing[0]}")
    bad = [pair for pair, s in costs.per_update.items() if not (0 < s < math.inf)]
    if bad:
        raise AnalysisError(f"{where}: seconds per update of {bad[0]} is not a positive number")
    return costs


def confirmed_seed(outcome: TrialOutcome, run) -> ConfirmedSeed:
    metrics, tags = run.data.metrics, run.data.tags
    reached = outcome.steps_to_target is not None
    memorised = metrics.get("steps_to_memorise")
    return ConfirmedSeed(
        seed=outcome.coords.trial,
        status=outcome.status,
        reached=reached,
        steps=float(outcome.steps_to_target) if reached else metrics.get("steps"),
        seconds=outcome.seconds_to_target if reached else metrics.get("train_time_s"),
        delay_steps=outcome.steps_to_target - memorised if reached and memorised is not None else None,
        before_memorising=tags.get("grokked_before_memorised") == "True",
        final_test_acc=metrics.get("final_test_acc"),
        machine=tags.get(TAG_PREFIX, NOT_RECORDED),
    )
