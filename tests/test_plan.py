"""A sweep's planning, without Ray or a tracking store: which trials run, which are skipped, and the estimate."""

import sys

import pytest
import yaml

from grokbench.sweep.keys import trial_key
from grokbench.sweep.plan import (
    SWEEP_STARTUP_S, TRIAL_STARTUP_S, done_in_grid, estimate_seconds, example_trial, grid_entries,
    local_concurrency, placed, planned_count, representatives, to_run, total_trials,
)
from grokbench.sweep.spec import build_sweep, load_sweep

GRID = {"name": "plan", "task": "xor", "budget": {"max_epochs": 100}, "grid": {"seed": [0, 1, 2]},
        "methods": {"baseline": {}, "grokalign": {"lam": 1e-3}}, "resources": {"cpus_per_trial": 2}}
SEARCH = {**GRID, "name": "plan-search", "grid": {}, "base": {"seed": 4},
          "search": {"num_samples": 3, "space": {"grokalign": {"lam": {"low": 1e-4, "high": 1e-1, "log": True}},
                                                 "grokfast": {"lam": {"low": 0.01, "high": 1.0}}}},
          "methods": {"grokalign": {}, "grokfast": {}}}


def sweep(tmp_path, raw):
    path = tmp_path / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_sweep(str(path))


def test_a_grid_runs_only_the_trials_not_done_and_counts_them(tmp_path):
    spec = sweep(tmp_path, GRID)
    keys = [trial_key(cfg.to_dict()) for cfg in spec.trials()]
    assert total_trials(spec) == 6 and len(set(keys)) == 6
    done = {keys[0]: "plan-1", keys[3]: "plan-2", "some-other-trial": "elsewhere"}
    skipped = done_in_grid(spec, done)
    assert skipped == {keys[0]: "plan-1", keys[3]: "plan-2"}  # trials of other sweeps are not this grid's
    trials = to_run(spec, skipped)
    assert [trial_key(cfg.to_dict()) for cfg in trials] == [k for k in keys if k not in skipped]
    assert planned_count(spec, trials) == 4
    assert to_run(spec, done_in_grid(spec, dict.fromkeys(keys, "x"))) == []


def test_a_search_is_never_skipped_and_runs_every_sample(tmp_path):
    spec = sweep(tmp_path, SEARCH)
    assert total_trials(spec) == 6
    assert done_in_grid(spec, {"anything": "x"}) == {} and to_run(spec, {}) == []
    assert planned_count(spec, []) == 6
    assert example_trial(spec).method == "grokalign" and example_trial(spec).seed == 4


def test_trials_are_placed_on_their_cpus_and_gpus(tmp_path):
    spec = sweep(tmp_path, GRID)
    cfg = placed(spec.trials()[0], spec)
    assert (cfg.threads, cfg.device, cfg.data_dir) == (2, "cpu", None)
    gpu = build_sweep(str(tmp_path / "plan.yaml"), {"gpus_per_trial": 0.5, "cpus_per_trial": 1})
    entry = grid_entries(gpu, gpu.trials()[:1], fault=None)[0]
    assert (entry["config"]["threads"], entry["config"]["device"]) == (1, "cuda")
    assert entry["checkpoint_every"] == gpu.checkpoint_every and entry["fault"] is None


def test_concurrency_is_bounded_by_cpus_and_max_concurrent(tmp_path):
    spec = sweep(tmp_path, GRID)  # 2 CPUs a trial
    assert local_concurrency(spec, cpus=16) == 8 and local_concurrency(spec, cpus=3) == 1
    capped = build_sweep(str(tmp_path / "plan.yaml"), {"max_concurrent": 3})
    assert local_concurrency(capped, cpus=16) == 3


def test_the_estimate_is_every_budget_at_the_measured_pace_spread_over_the_slots(tmp_path):
    spec = sweep(tmp_path, GRID)
    trials = to_run(spec, {})
    per_epoch = {"baseline": 0.01, "grokalign": 0.03}
    # 3 trials each: 3·100·0.01 + 3·100·0.03 = 12 s of training, plus start-ups, over 2 slots
    expected = SWEEP_STARTUP_S + (12.0 + 6 * TRIAL_STARTUP_S) / 2
    assert estimate_seconds(spec, trials, 2, per_epoch) == pytest.approx(expected)
    # more slots than trials: one trial's worth of time each, at once
    assert estimate_seconds(spec, trials[:1], 8, per_epoch) == pytest.approx(SWEEP_STARTUP_S + 1.0 + TRIAL_STARTUP_S)
    search = sweep(tmp_path, SEARCH)
    assert set(representatives(search, [])) == {"grokalign", "grokfast"}
    rates = {"grokalign": 0.02, "grokfast": 0.01}
    assert estimate_seconds(search, [], 1, rates) == pytest.approx(SWEEP_STARTUP_S + 9.0 + 6 * TRIAL_STARTUP_S)


def test_planning_needs_neither_ray_nor_mlflow():
    import subprocess

    code = ("import sys, grokbench.sweep.plan; "
            "sys.exit(any(m in sys.modules for m in ('ray', 'mlflow')))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
