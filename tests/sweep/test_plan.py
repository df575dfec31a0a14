"""A sweep's planning, without Ray or a tracking store: which trials run, which are skipped, and the estimate."""

import json
import re
import sys
from dataclasses import replace

import pytest
import yaml

from grokbench.machine import NOT_RECORDED
from grokbench.sweep.keys import trial_key
from grokbench.sweep.plan import (
    SWEEP_STARTUP_S,
    TRIAL_STARTUP_S,
    GridPlan,
    StoredTrial,
    estimate_seconds,
    example_trial,
    grid_entries,
    local_concurrency,
    placed,
    plan_grid,
    planned_count,
    representatives,
    to_run,
    total_trials,
    warn_of_other_machines,
)
from grokbench.sweep.spec import build_sweep, load_sweep

GRID = {
    "name": "plan",
    "task": "xor",
    "budget": {"max_epochs": 100},
    "grid": {"seed": [0, 1, 2]},
    "methods": {"baseline": {}, "grokalign": {"lam": 1e-3}},
    "resources": {"cpus_per_trial": 2},
}
SEARCH = {
    **GRID,
    "name": "plan-search",
    "grid": {},
    "base": {"seed": 4},
    "search": {
        "num_samples": 3,
        "space": {
            "grokalign": {"lam": {"low": 1e-4, "high": 1e-1, "log": True}},
            "grokfast": {"lam": {"low": 0.01, "high": 1.0}},
        },
    },
    "methods": {"grokalign": {}, "grokfast": {}},
}


def sweep(tmp_path, raw):
    path = tmp_path / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_sweep(str(path))


def stored(
    status,
    epochs=100,
    epochs_to_grok=None,
    checkpoint=None,
    sweep_id="plan-1",
    prior_status=None,
    event_epochs=None,
    machine=NOT_RECORDED,
):
    return StoredTrial(
        machine=machine,
        sweep_id=sweep_id,
        run_id=f"run-{sweep_id}",
        status=status,
        epochs=epochs,
        epochs_to_grok=epochs_to_grok,
        checkpoint=checkpoint,
        prior_status=prior_status,
        event_epochs=event_epochs or {},
    )


def test_a_grid_runs_only_the_trials_not_done_and_counts_them(tmp_path):
    spec = sweep(tmp_path, GRID)
    keys = [trial_key(cfg) for cfg in spec.trials()]
    assert total_trials(spec) == 6 and len(set(keys)) == 6
    held = {
        keys[0]: stored("censored"),
        keys[3]: stored("grokked", 40, 40, sweep_id="plan-2"),
        keys[4]: stored("failed"),
        "some-other-trial": stored("grokked", 40, 40),
    }
    grid_plan = plan_grid(spec, held)
    assert grid_plan.skipped == {keys[0]: "plan-1", keys[3]: "plan-2"}  # a failure settles nothing
    assert grid_plan.continued == {}
    trials = to_run(spec, grid_plan.skipped)
    assert [trial_key(cfg) for cfg in trials] == [k for k in keys if k not in grid_plan.skipped]
    assert planned_count(spec, trials) == 4
    everything = plan_grid(spec, {key: stored("diverged", 7) for key in keys})
    assert to_run(spec, everything.skipped) == []


def test_a_larger_budget_continues_censored_trials_and_keeps_those_it_does_not_reopen(tmp_path):
    spec = build_sweep(str(sweep(tmp_path, GRID).path), {"max_epochs": 300})
    keys = [trial_key(cfg) for cfg in spec.trials()]
    assert keys == [trial_key(cfg) for cfg in sweep(tmp_path, GRID).trials()]  # the budget is no part of a key
    checkpoint = tmp_path / "checkpoint_000003"
    checkpoint.mkdir()
    held = {
        keys[0]: stored("censored", checkpoint=str(checkpoint)),  # continues in its own run
        keys[1]: stored("censored"),  # no checkpoint (imported, say): runs again from the start
        keys[2]: stored("censored", epochs=300),  # already ran this budget
        keys[3]: stored("grokked", 40, 40, checkpoint=str(checkpoint)),  # stopped at grokking, as asked
        keys[4]: stored("diverged", 12, checkpoint=str(checkpoint)),
        keys[5]: stored("censored", checkpoint=str(tmp_path / "gone")),
    }  # its checkpoint was deleted
    grid_plan = plan_grid(spec, held)
    assert grid_plan.skipped == {keys[2]: "plan-1", keys[3]: "plan-1", keys[4]: "plan-1"}
    assert grid_plan.continued == {
        keys[0]: {"run_id": "run-plan-1", "checkpoint": str(checkpoint), "sweep_id": "plan-1", "from_epoch": 100}
    }
    entries = grid_entries(spec, to_run(spec, grid_plan.skipped), None, grid_plan.continued)
    assert [e["continue"] is not None for e in entries] == [True, False, False]
    assert entries[0]["config"]["max_epochs"] == 300


def test_a_continuation_that_stopped_or_failed_goes_on_from_its_latest_checkpoint(tmp_path):
    spec = build_sweep(str(sweep(tmp_path, GRID).path), {"max_epochs": 300})
    keys = [trial_key(cfg) for cfg in spec.trials()]
    checkpoint = tmp_path / "checkpoint_000009"
    checkpoint.mkdir()
    held = {
        keys[0]: stored("running", checkpoint=str(checkpoint), prior_status="censored"),  # Ctrl-C
        keys[1]: stored("failed", checkpoint=str(checkpoint), prior_status="censored"),  # past its retries
        keys[2]: stored("failed", checkpoint=str(checkpoint)),
    }  # a trial that failed on its first budget
    grid_plan = plan_grid(spec, held)
    assert set(grid_plan.continued) == {keys[0], keys[1]} and grid_plan.skipped == {}


def test_a_grokked_trial_continues_when_asked_to_train_further_past_grokking(tmp_path):
    spec = sweep(tmp_path, {**GRID, "base": {"epochs_after_grok": 20}})
    key = trial_key(spec.trials()[0])
    held = {key: stored("grokked", 40, 40, checkpoint="s3://bucket/checkpoint")}  # shared storage is trusted
    assert plan_grid(spec, held).continued[key]["from_epoch"] == 40
    done = {key: stored("grokked", 60, 40, checkpoint="s3://bucket/checkpoint")}  # it already trained 20 more
    assert plan_grid(spec, done).skipped == {key: "plan-1"}


def test_a_larger_budget_reopens_a_grokked_trial_whose_further_event_is_still_to_come(tmp_path):
    poly = {**GRID, "name": "plan-poly", "task": "polynomial", "grid": {"seed": [0, 1, 2]}, "methods": {"baseline": {}}}
    spec = build_sweep(str(sweep(tmp_path, poly).path), {"max_epochs": 300})
    keys = [trial_key(cfg) for cfg in spec.trials()]
    checkpoint = tmp_path / "checkpoint_000010"
    checkpoint.mkdir()
    held = {
        keys[0]: stored("grokked", 100, 40, str(checkpoint)),  # grok_strict not reached by its budget: goes on
        keys[1]: stored("grokked", 70, 40, str(checkpoint), event_epochs={"grok_strict": 70}),  # settled at 70
        keys[2]: stored("grokked", 100, 40, str(checkpoint), event_epochs={"grok_strict": 100}),
    }  # at the end
    grid_plan = plan_grid(spec, held)
    assert set(grid_plan.continued) == {keys[0]} and grid_plan.continued[keys[0]]["from_epoch"] == 100
    assert grid_plan.skipped == {keys[1]: "plan-1", keys[2]: "plan-1"}
    same_budget = plan_grid(sweep(tmp_path, poly), {keys[0]: stored("grokked", 100, 40, str(checkpoint))})
    assert same_budget.continued == {} and same_budget.skipped == {keys[0]: "plan-1"}  # it ran its whole budget
    after = build_sweep(str(sweep(tmp_path, {**poly, "base": {"epochs_after_grok": 50}}).path), {"max_epochs": 300})
    assert [trial_key(cfg) for cfg in after.trials()] == keys  # a budget, no part of the key
    asked = plan_grid(after, {keys[1]: stored("grokked", 70, 40, str(checkpoint), event_epochs={"grok_strict": 70})})
    assert set(asked.continued) == {keys[1]}  # 50 epochs past the later event, epoch 70: to 120
    trained = {keys[1]: stored("grokked", 120, 40, str(checkpoint), event_epochs={"grok_strict": 70})}
    assert plan_grid(after, trained).skipped == {keys[1]: "plan-1"}
    xor = build_sweep(str(sweep(tmp_path, GRID).path), {"max_epochs": 300})  # no further events: settled at grokking
    assert plan_grid(xor, {trial_key(xor.trials()[0]): stored("grokked", 100, 40, str(checkpoint))}).continued == {}


def test_a_run_its_stopping_rule_ended_settles_there_unless_asked_to_train_past_it(tmp_path):
    phase = {**GRID, "name": "plan-phase", "task": "polynomial", "base": {"preset": "kumar_fig3e"}}
    spec = build_sweep(str(sweep(tmp_path, {**phase, "methods": {"baseline": {}}}).path), {"max_epochs": 110_000})
    keys = [trial_key(cfg) for cfg in spec.trials()]
    checkpoint = tmp_path / "checkpoint_000010"
    checkpoint.mkdir()
    converged = stored("censored", 20_000, None, str(checkpoint), event_epochs={"converged": 20_000})
    held = {
        keys[0]: converged,  # the test MSE never fell below the line: stopped by the rule all the same
        keys[1]: stored("grokked", 9_000, 4_000, str(checkpoint), event_epochs={"converged": 9_000}),
        keys[2]: stored("censored", 20_000, None, str(checkpoint)),  # stopped by a smaller budget: goes on
    }
    grid_plan = plan_grid(spec, held)
    assert grid_plan.skipped == {keys[0]: "plan-1", keys[1]: "plan-1"}
    assert set(grid_plan.continued) == {keys[2]}
    assert plan_grid(spec, {keys[2]: stored("censored", 110_000, None, str(checkpoint))}).skipped == {keys[2]: "plan-1"}
    strict_only = stored("grokked", 20_000, 4_000, str(checkpoint), event_epochs={"grok_strict": 5_000})
    assert set(plan_grid(spec, {keys[1]: strict_only}).continued) == {keys[1]}  # not yet converged: goes on
    past = {**phase, "name": "plan-phase-past", "base": {**phase["base"], "epochs_after_grok": 500}}
    after = build_sweep(str(sweep(tmp_path, {**past, "methods": {"baseline": {}}}).path), {"max_epochs": 110_000})
    assert [trial_key(cfg) for cfg in after.trials()] == keys  # a budget, no part of the key
    assert plan_grid(after, {keys[0]: converged}).continued[keys[0]]["from_epoch"] == 20_000  # on to 20 500
    trained = replace(converged, epochs=20_500)
    assert plan_grid(after, {keys[0]: trained}).skipped == {keys[0]: "plan-1"}
    capped = build_sweep(str(sweep(tmp_path, {**past, "methods": {"baseline": {}}}).path), {"max_epochs": 20_200})
    assert set(plan_grid(capped, {keys[0]: converged}).continued) == {keys[0]}  # to the budget, 20 200
    assert plan_grid(capped, {keys[0]: replace(converged, epochs=20_200)}).skipped == {keys[0]: "plan-1"}


def test_a_search_is_never_skipped_and_runs_every_sample(tmp_path):
    spec = sweep(tmp_path, SEARCH)
    assert total_trials(spec) == 6
    assert plan_grid(spec, {"anything": stored("grokked", 40, 40)}).skipped == {} and to_run(spec, {}) == []
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


@pytest.mark.slow  # imports the planner in a fresh interpreter: seconds
def test_planning_needs_neither_ray_nor_mlflow():
    import subprocess

    code = "import sys, grokbench.sweep.plan; sys.exit(any(m in sys.modules for m in ('ray', 'mlflow')))"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_arms_are_sets_of_settings_that_go_together_each_crossed_with_the_grid_unless_it_says_otherwise(tmp_path):
    raw = {
        **GRID,
        "methods": {
            "baseline": {"arms": [{}, {"weight_decay": 0.01, "seed": [0]}]},
            "grokfast": {
                "eval_every": 5,
                "arms": [
                    {"grokfast_variant": "ma", "lam": 5.0, "weight_decay": [0.01, 0.02]},
                    {"grokfast_variant": "ema", "lam": 2.0},
                ],
            },
        },
    }
    trials = sweep(tmp_path, raw).trials()
    arms = sorted(
        (c.method, c.seed, c.weight_decay, c.lam, c.eval_every, c.method_settings.as_dict().get("grokfast_variant"))
        for c in trials
    )
    xor_wd = 0.1  # the task's default weight decay, where an arm leaves it
    expected = [("baseline", s, xor_wd, 0.0, 2, None) for s in (0, 1, 2)] + [("baseline", 0, 0.01, 0.0, 2, None)]
    expected += [("grokfast", s, wd, 5.0, 5, "ma") for s in (0, 1, 2) for wd in (0.01, 0.02)]
    expected += [("grokfast", s, xor_wd, 2.0, 5, "ema") for s in (0, 1, 2)]
    assert arms == sorted(expected)  # not crossed: no MA arm at λ 2, no EMA arm at wd 0.01
    assert [c.seed for c in trials] == sorted(c.seed for c in trials)  # seed-major, as every grid


@pytest.mark.parametrize(
    "arms, message",
    [
        ([], "methods.baseline.arms: an empty list gives no trials"),
        ({"weight_decay": 0.01}, "methods.baseline.arms: must be a non-empty list of mappings"),
        ([{}, {"weight_decai": 0.01}], "methods.baseline.arms[1].weight_decai: unknown key"),
        ([{"seed": []}], "methods.baseline.arms[0].seed: an empty list gives no trials"),
        ([{"weight_decay": -1}], "methods.baseline.arms[0]: weight_decay: must be >= 0"),
        ([{}, {}], "is listed more than once"),
    ],
)
def test_bad_arms_are_refused_naming_the_arm_and_the_key(tmp_path, arms, message):
    from grokbench.sweep.errors import SweepError

    with pytest.raises(SweepError, match=re.escape(message)):
        sweep(tmp_path, {**GRID, "methods": {"baseline": {"arms": arms}}})


def test_a_sweep_keeps_two_checkpoints_a_trial_unless_it_says_how_many(tmp_path):
    from grokbench.sweep.errors import SweepError

    assert sweep(tmp_path, GRID).keep_checkpoints == 2
    assert sweep(tmp_path, {**GRID, "keep_checkpoints": 1}).keep_checkpoints == 1
    for bad in (0, -1, 1.5, "one", True):
        with pytest.raises(SweepError, match=r"keep_checkpoints: must be a positive integer, got "):
            sweep(tmp_path, {**GRID, "keep_checkpoints": bad})


def test_the_modular_arithmetic_sweeps_hold_the_published_settings():
    grokfast = load_sweep("modmul_grokfast")
    assert (grokfast.max_epochs, grokfast.keep_checkpoints) == (10_000, 1)  # 100 000 updates: 10 an epoch
    arms = {}
    for c in grokfast.trials():
        s = c.task_settings
        assert (c.task, s.p, s.op, s.train_fraction, c.optimizer, c.batch_size) == (
            "modarith",
            97,
            "mul",
            0.5,
            "adam",
            512,
        )
        own = c.method_settings.as_dict()
        arm = (
            c.method,
            c.weight_decay,
            c.lam,
            own.get("grokfast_variant"),
            own.get("grokfast_window"),
            own.get("grokfast_alpha"),
        )
        arms.setdefault(arm, []).append(c.seed)
    assert arms == {
        ("baseline", 0.0, 0.0, None, None, None): [0, 1, 2],
        ("baseline", 0.01, 0.0, None, None, None): [0],  # the weight-decay control
        ("grokfast", 0.01, 5.0, "ma", 100, 0.8): [0, 1, 2],  # MA: w and λ; α unused
        ("grokfast", 0.005, 2.0, "ema", 100, 0.98): [0, 1, 2],
    }
    modadd = load_sweep("modadd")
    assert modadd.max_epochs == 15_000
    cells = sorted((c.method, c.task_settings.freeze_embeddings, c.seed) for c in modadd.trials())
    assert cells == sorted(
        (m, frozen, seed) for m in ("baseline", "grokalign") for frozen in (False, True) for seed in (0, 1)
    )
    assert {(c.task_settings.p, c.task_settings.op, c.weight_decay, c.batch_size) for c in modadd.trials()} == {
        (113, "add", 1.0, 3830)
    }
    scan = load_sweep("modadd_lambda_scan")
    assert {c.seed for c in scan.trials()} == {100} and not {0, 1} & {c.seed for c in scan.trials()}
    assert {(c.lam, c.task_settings.freeze_embeddings) for c in scan.trials() if c.method == "grokalign"} == {
        (lam, frozen) for lam in (1e-4, 1e-3, 1e-2, 1e-1) for frozen in (False, True)
    }
    # modadd's λ is the scan's choice (results/modadd_lambda_scan/), one of the values it tried
    assert {c.lam for c in modadd.trials() if c.method == "grokalign"} == {1e-2}


def test_only_picks_part_of_a_grid_as_the_whole_sweep_has_it_and_refuses_what_picks_nothing():
    from grokbench.sweep.errors import SweepError

    whole = {trial_key(c.to_dict()): c for c in load_sweep("modadd").trials()}
    trained = build_sweep("modadd", {"methods": ["grokalign"], "only": {"freeze_embeddings": ["false"]}})
    keys = [trial_key(c.to_dict()) for c in trained.trials()]
    assert len(keys) == 2 and all(k in whole and not whole[k].task_settings.freeze_embeddings for k in keys)
    assert all(whole[k].method == "grokalign" for k in keys)
    # a number is read as a number however it is written; settings combine (all must match)
    control = build_sweep("modmul_grokfast", {"only": {"weight_decay": ["1e-2"], "method": ["baseline"]}})
    assert [(c.method, c.weight_decay, c.seed) for c in control.trials()] == [("baseline", 0.01, 0)]
    for only, message in [
        ({"freeze": ["false"]}, "--only freeze: not a setting of task modarith"),
        (
            {"freeze_embeddings": ["maybe"]},
            "--only freeze_embeddings=maybe: no trial of this sweep has it; its trials have "
            "freeze_embeddings = false, true",
        ),
        ({"seed": ["1"], "lam": ["0.1"]}, "--only lam=0.1: no trial of this sweep has it"),
    ]:
        with pytest.raises(SweepError, match=re.escape(message)):
            build_sweep("modadd", {"only": only})
    with pytest.raises(SweepError, match="no trial of this sweep has all of these"):
        build_sweep("modmul_grokfast", {"only": {"weight_decay": ["0.01"], "grokfast_variant": ["ema"]}})
    # a setting only some methods have picks among theirs; one no method here has is refused, not read as null
    ema = build_sweep("modmul_grokfast", {"only": {"grokfast_variant": ["ema"], "seed": ["0", "2"]}})
    assert [(c.method, c.method_settings.grokfast_variant, c.seed) for c in ema.trials()] == [
        ("grokfast", "ema", 0),
        ("grokfast", "ema", 2),
    ]
    with pytest.raises(SweepError, match=r"--only grokfast_window: no trial of this sweep has this setting"):
        build_sweep("modadd", {"only": {"grokfast_window": ["100"]}})
    # bools as YAML reads them; the plan keeps --only as JSON, and the spec rebuilt from it picks the same trials
    frozen = build_sweep("modadd", {"only": {"freeze_embeddings": ["True"]}})
    assert {c.task_settings.freeze_embeddings for c in frozen.trials()} == {True} and len(frozen.trials()) == 4
    again = build_sweep("modadd", json.loads(json.dumps({"only": {"freeze_embeddings": ["yes"]}})))
    assert [trial_key(c.to_dict()) for c in again.trials()] == [trial_key(c.to_dict()) for c in frozen.trials()]
    with pytest.raises(SweepError, match="a search has none to pick"):
        build_sweep("mnist_tune", {"only": {"seed": ["0"]}})


def test_the_polynomial_strength_scan_runs_on_a_draw_of_its_own_at_the_methods_sweeps_setting():
    methods, scan = load_sweep("polynomial_methods"), load_sweep("polynomial_strength_scan")
    assert {(c.seed, c.task_settings.data_seed) for c in scan.trials()} == {(100, 100)}
    assert not {c.seed for c in methods.trials()} & {100}
    assert {c.task_settings.data_seed for c in methods.trials()} == {0}
    assert {(replace(c.task_settings, data_seed=0), c.max_epochs) for c in scan.trials()} == {
        (c.task_settings, c.max_epochs) for c in methods.trials()
    }
    arms = {(c.method, c.lam, c.method_settings.as_dict().get("grokfast_alpha")) for c in scan.trials()}
    assert arms == {("baseline", 0.0, None)} | {("grokalign", lam, None) for lam in (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)} | {
        ("grokfast", lam, alpha) for lam in (0.1, 1.0, 5.0) for alpha in (0.8, 0.98)
    } | {("grokfast", 25.0, 0.8)}


def test_the_plan_says_where_each_reused_trial_ran_and_which_ran_elsewhere(tmp_path):
    spec = build_sweep(str(sweep(tmp_path, GRID).path), {"max_epochs": 300})
    keys = [trial_key(cfg) for cfg in spec.trials()]
    checkpoint = tmp_path / "checkpoint_000003"
    checkpoint.mkdir()
    held = {
        keys[0]: stored("grokked", 100, 40, machine="here"),
        keys[1]: stored("censored", 100, checkpoint=str(checkpoint), machine="there"),  # continues
        keys[2]: stored("diverged", 7),  # before machines were recorded
        keys[3]: stored("failed", 9, machine="there"),  # runs again: nothing of it is reused
    }
    grid_plan = plan_grid(spec, held)
    assert grid_plan.machines == {keys[0]: "here", keys[1]: "there", keys[2]: NOT_RECORDED}
    assert grid_plan.reused_elsewhere("here") == {"there": 1, NOT_RECORDED: 1}


def test_a_plan_reusing_trials_from_other_machines_warns_naming_them(capsys):
    machines = {"a": "box ×2", "b": "big ×64", "c": "big ×64", "d": NOT_RECORDED}
    warn_of_other_machines(GridPlan({"a": "s", "b": "s", "c": "s"}, {"d": {}}, machines), "box ×2", sys.stdout)
    assert capsys.readouterr().out == (
        "warning: 3 trials it reuses ran on a machine other than this one or not recorded (this one: box ×2): "
        "big ×64 (2 trials); machine not recorded (1 trial). Their steps compare with this sweep's, their seconds "
        "do not (--rerun runs them all here)\n"
    )
    warn_of_other_machines(GridPlan({"a": "s"}, {}, {"a": "box ×2"}), "box ×2", sys.stdout)
    assert capsys.readouterr().out == ""
