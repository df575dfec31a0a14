"""The tuned comparison: the sweep files (mnist_ce, mnist_tune, mnist_tuned), the tuning's history and best settings,
the paste-able block, the selection of the confirmation's runs and "Table 1, tuned" — on hand-made runs, where each
figure is known; Optuna's several-setting search through Ray's searcher, without a cluster; and, marked slow, the
whole path on a real local Ray and a real SQLite store."""

import io
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from analysis.runs import AnalysisError
from analysis.tuning import (
    best_trials,
    history,
    history_figure,
    objective,
    searched,
    select_tuned,
    setting_label,
    trials_table,
    tuned_tables,
)
from analysis.tuning import (
    main as tuning_main,
)
from grokbench.resolve import config_of, resolve
from grokbench.sweep.errors import SweepError
from grokbench.sweep.keys import trial_key
from grokbench.sweep.plan import search_example
from grokbench.sweep.report import methods_block, tuned_setting
from grokbench.sweep.spec import load_sweep

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"


def run(
    method,
    seed,
    status="grokked",
    time_s=10.0,
    steps=400,
    wd=0.01,
    lam=0.0,
    start=0,
    max_epochs=1000,
    sweep="tune-1",
    variant="",
):
    """One trial as analysis.runs reads it: grokked at `steps` / `time_s`; censored at its budget of `max_epochs`
    epochs (4 updates each) after `time_s` seconds; diverged at `steps` after `time_s`."""
    grokked = status == "grokked"
    steps_run = steps if status != "censored" else 4 * max_epochs
    return {
        "run_id": f"{method}-{seed}-{start}",
        "experiment": "x",
        "start_time": start,
        "sweep_id": sweep,
        "trial_key": f"{method}-{seed}-{wd}-{lam}-{start}",
        "status": status,
        "method": method,
        "loss": "ce",
        "task": "mnist",
        "variant": variant,
        "lam": lam,
        "init_scale": 8.0,
        "seed": float(seed),
        "max_epochs": float(max_epochs),
        "eval_every": 10.0,
        "weight_decay": wd,
        "lr": 1e-3,
        "steps": float(steps_run),
        "epochs": steps_run / 4,
        "train_time_s": time_s,
        "wall_s": time_s,
        "steps_to_memorise": 40.0,
        "epochs_to_memorise": 10.0,
        "time_to_memorise_s": 1.0,
        "steps_to_grok": float(steps) if grokked else np.nan,
        "epochs_to_grok": steps / 4 if grokked else np.nan,
        "time_to_grok_s": time_s if grokked else np.nan,
        "grok_phase_time_s": time_s - 1.0 if grokked else np.nan,
        "final_train_acc": 1.0,
        "final_test_acc": 0.9 if grokked else 0.6,
    }


def frame(*rows):
    return pd.DataFrame(list(rows))


@pytest.fixture
def tuning():
    """A tuning on seed 100: the baseline over weight decay; GrokAlign over weight decay and λ, one trial failed."""
    return frame(
        run("baseline", 100, "censored", time_s=50.0, wd=0.002, start=1),
        run("baseline", 100, "grokked", time_s=30.0, wd=0.31234, start=2),
        run("baseline", 100, "grokked", time_s=35.0, wd=0.9, start=3),
        run("grokalign", 100, "diverged", time_s=2.0, steps=400, wd=20.0, lam=0.5, start=1),  # 100 of 1000 epochs
        {**run("grokalign", 100, "failed", wd=0.1, lam=0.1, start=2), "train_time_s": np.nan},
        run("grokalign", 100, "grokked", time_s=8.0, wd=0.052341, lam=0.0031234, start=3),
        run("grokalign", 100, "grokked", time_s=12.0, wd=0.2, lam=0.01, start=4),
    )


# ---- the tuning's history and its best -----------------------------------------------------------------------------


def test_the_objective_is_seconds_to_grok_else_the_budgets_seconds(tuning):
    values = objective(tuning).tolist()
    assert values[:3] == [50.0, 30.0, 35.0]  # censored: it ran its whole budget, so its own training seconds
    assert values[3] == pytest.approx(2.0 * 1000 / 100)  # diverged at epoch 100 of 1000: its rate, extrapolated
    assert math.isnan(values[4]) and values[5:] == [8.0, 12.0]  # a failed trial has no objective


def test_history_numbers_trials_in_start_order_and_carries_the_best_so_far_past_a_failure(tuning):
    hist = history(tuning.iloc[::-1])  # the order rows come in does not matter, the start time does
    base = hist[hist["method"] == "baseline"]
    assert base["trial"].tolist() == [1, 2, 3] and base["best"].tolist() == [50.0, 30.0, 30.0]
    align = hist[hist["method"] == "grokalign"]
    assert align["trial"].tolist() == [1, 2, 3, 4]
    assert align["best"].tolist() == [20.0, 20.0, 8.0, 8.0]
    assert hist["method"].tolist()[0] == "baseline"  # the paper's order


def test_the_best_trial_and_what_was_searched_per_method(tuning):
    hist = history(tuning)
    assert searched(hist) == {"baseline": ["weight_decay"], "grokalign": ["weight_decay", "lam"]}
    best = best_trials(hist).set_index("method")
    assert best.loc["baseline", "weight_decay"] == 0.31234 and best.loc["grokalign", "lam"] == 0.0031234
    assert setting_label(best.loc["grokalign"], ["weight_decay", "lam"]) == "wd=0.05234, λ=0.003123"


def test_every_tuning_trial_is_a_row_with_its_best_so_far(tuning):
    table = trials_table(history(tuning))
    assert len(table.rows) == 7
    assert table.rows[1] == ["Baseline", "2", "wd=0.3123", "grokked", "30.0", "30.0"]
    assert table.rows[4][3:] == ["failed", "—", "20.0"]


def test_the_history_figure_is_written(tuning, tmp_path):
    paths = history_figure(history(tuning), tmp_path)
    assert [p.name for p in paths] == ["tuning_history.png", "tuning_history.pdf"]
    assert all(p.stat().st_size > 5000 for p in paths)


# ---- the paste-able block --------------------------------------------------------------------------------------------


def test_the_tuned_block_pasted_over_the_confirmation_sweep_gives_trials_at_the_tuned_values(tmp_path):
    tuned = {
        "baseline": tuned_setting(resolve(config_of(method="baseline", weight_decay=0.312345678)), ["weight_decay"]),
        "grokalign": tuned_setting(
            resolve(config_of(method="grokalign", weight_decay=2.0e-3, lam=1.0e-5, grokalign_every=4)),
            ["weight_decay", "lam"],
        ),
    }
    assert tuned == {
        "baseline": {"weight_decay": 0.3123},
        "grokalign": {"weight_decay": 0.002, "lam": 1e-05, "grokalign_every": 4},
    }
    block = methods_block(tuned, "tuned by sweep mnist_tune-1 (mnist_tune)")
    assert block.startswith("# tuned by sweep mnist_tune-1 (mnist_tune)")
    text = (SWEEPS / "mnist_tuned.yaml").read_text()
    start, end = text.index("\nmethods:\n") + 1, text.index("\nresources:")
    pasted = tmp_path / "mnist_tuned.yaml"
    pasted.write_text(text[:start] + block + text[end:])
    trials = load_sweep(str(pasted)).trials()
    assert {(c.method, c.weight_decay, c.lam, c.seed) for c in trials} == {
        *(("baseline", 0.3123, 0.0, s) for s in range(5)),
        *(("grokalign", 0.002, 1e-05, s) for s in range(5)),
    }
    assert all(c.method_settings.grokalign_every == 4 for c in trials if c.method == "grokalign")


def test_a_searchs_report_ends_with_the_tuned_methods_section(tmp_path, migrated_store):
    from types import SimpleNamespace

    from grokbench.sweep.mlflow_store import TrackingStore
    from grokbench.sweep.report import report_best

    def result(method, seconds, **values):  # a finished Tune trial, as a search's ResultGrid holds it
        cfg = resolve(config_of(method=method, loss="ce", seed=100, max_epochs=5000, **values)).to_dict()
        return SimpleNamespace(
            error=None,
            metrics={"objective": seconds, "summary": {"status": "grokked"}},
            config={"trial": {"config": cfg}},
        )

    shutil.copy(migrated_store, tmp_path / "mlflow.db")
    store = TrackingStore(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = store.prepare_experiment("grokbench/mnist_tune")
    grids = [
        [result("baseline", 50.0, weight_decay=0.5), result("baseline", 40.0, weight_decay=0.123456)],
        [result("grokalign", 9.0, weight_decay=2e-3, lam=1e-5)],
        [],
        [SimpleNamespace(error=RuntimeError("died"), metrics={}, config={})],
    ]
    out = io.StringIO()
    report_best(load_sweep("mnist_tune"), grids, store, experiment_id, "mnist_tune-1", out)
    text = out.getvalue()
    assert "grokfast     no finished trial" in text and "adversarial  no finished trial" in text
    block = text[text.index("# tuned by sweep mnist_tune-1 (mnist_tune)") :]
    assert yaml.safe_load(block) == {
        "methods": {"baseline": {"weight_decay": 0.1235}, "grokalign": {"weight_decay": 0.002, "lam": 1e-05}}
    }
    assert "lam: 1.0e-05" in block  # YAML reads it as a number (1e-05 it would read as a string)
    assert store.experiment_tags("grokbench/mnist_tune")["best.mnist_tune-1.baseline.weight_decay"] == "0.123456"


# ---- the confirmation and Table 1, tuned ---------------------------------------------------------------------------


def confirmation(wd_base=0.3123, wd_align=0.05234, lam_align=0.003123, seeds=(0, 1, 2)):
    """Confirmation runs at the tuning fixture's picks (as pasted: 4 significant figures): the baseline in
    40/60/80 s, GrokAlign in 10/20/30 s."""
    return frame(
        *(run("baseline", s, time_s=t, wd=wd_base, sweep="c") for s, t in zip(seeds, (40.0, 60.0, 80.0), strict=False)),
        *(
            run("grokalign", s, time_s=t, wd=wd_align, lam=lam_align, sweep="c")
            for s, t in zip(seeds, (10.0, 20.0, 30.0), strict=False)
        ),
    )


def test_the_tuned_table_compares_each_method_at_its_setting_with_the_tuned_baseline(tuning):
    (table,) = tuned_tables(confirmation(), history(tuning), "mnist_tune", "tune-1")
    assert table.name == "table1_tuned" and table.title == "Table 1, tuned — Cross-entropy"
    assert [r[0] for r in table.rows] == ["Baseline (wd=0.3123)", "GrokAlign (wd=0.05234, λ=0.003123)"]
    assert [r[1] for r in table.rows] == ["3/3", "3/3"] and [s["n"] for s in table.stats] == [3, 3]
    # seconds: geometric mean 40·60·80 over 10·20·30, cube-rooted
    assert table.stats[1]["time_ratio"] == pytest.approx((40 * 60 * 80 / (10 * 20 * 30)) ** (1 / 3))
    assert any("sweep tune-1" in n and "on seed 100" in n and "confirmed on seeds 0, 1, 2" in n for n in table.notes)


def test_runs_at_the_tuning_seed_or_other_settings_are_left_out_and_counted(tuning):
    runs = pd.concat(
        [
            confirmation(),
            frame(
                run("baseline", 100, time_s=5.0, wd=0.3123, sweep="c"),
                run("baseline", 3, time_s=5.0, wd=0.01, sweep="c"),
                run("grokfast", 0, time_s=5.0, wd=0.01, lam=0.1, sweep="c"),
            ),
        ]
    )
    selected, notes = select_tuned(runs, history(tuning))
    assert sorted(selected["seed"].unique()) == [0, 1, 2] and len(selected) == 6
    assert set(selected["variant"]) == {"wd=0.3123", "wd=0.05234, λ=0.003123"}
    assert "Baseline: 1 run(s) at the tuning seed (100) left out" in notes
    assert "Baseline: 1 run(s) at other settings left out" in notes
    assert "not tuned, left out: grokfast" in notes


def test_a_confirmation_not_at_the_tuned_settings_is_refused_naming_them(tuning):
    placeholders = confirmation(wd_base=0.01, wd_align=0.01, lam_align=1e-3)
    with pytest.raises(
        AnalysisError,
        match=r"ran baseline at wd=0\.01, λ=0, lr=0\.001, α=8, not at its tuned "
        r"setting wd=0\.3123, .*paste the tuned settings",
    ):
        select_tuned(placeholders, history(tuning))


# ---- the command, on a real SQLite store (no Ray) --------------------------------------------------------------------

SUMMARY = (
    "max_epochs",
    "steps",
    "epochs",
    "train_time_s",
    "steps_to_memorise",
    "epochs_to_memorise",
    "time_to_memorise_s",
    "steps_to_grok",
    "epochs_to_grok",
    "time_to_grok_s",
    "grok_phase_time_s",
)


def log_runs(uri, experiment, runs):
    """Each hand-made run as a trial run of `experiment`: its settings as params, its summary as metrics."""
    import mlflow
    from mlflow.entities import Metric, Param, RunTag

    from grokbench.sweep.mlflow_store import TrackingStore

    client = mlflow.MlflowClient(uri)
    experiment_id = TrackingStore(uri).prepare_experiment(experiment)
    for _, r in runs.iterrows():
        tags = {"grokbench.sweep_id": r["sweep_id"], "grokbench.trial_key": r["trial_key"], "status": r["status"]}
        created = client.create_run(experiment_id, start_time=int(r["start_time"]), tags=tags)
        params = {
            "task": "mnist",
            "method": r["method"],
            "loss": "ce",
            "seed": int(r["seed"]),
            "lam": r["lam"],
            "weight_decay": r["weight_decay"],
            "init_scale": 8.0,
            "max_epochs": int(r["max_epochs"]),
        }
        metrics = [Metric(k, float(r[k]), 0, 0) for k in SUMMARY if pd.notna(r[k])]
        client.log_batch(
            created.info.run_id,
            metrics=metrics,
            params=[Param(k, str(v)) for k, v in params.items()],
            tags=[RunTag("x", "y")],
        )
        client.set_terminated(created.info.run_id)


def test_the_command_prints_the_tuned_block_then_refuses_placeholders_then_writes_table_1_tuned(
    tuning, tmp_path, migrated_store, capsys
):
    shutil.copy(migrated_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log_runs(uri, "grokbench/mnist_tune", tuning)
    args = ["--tracking-uri", uri, "--no-log", "--out"]

    assert tuning_main([*args, str(tmp_path / "first")]) == 0  # tuned, not yet confirmed
    printed = capsys.readouterr().out
    block = printed[: printed.index("\n\n")]
    assert yaml.safe_load(block) == {
        "methods": {"baseline": {"weight_decay": 0.3123}, "grokalign": {"weight_decay": 0.05234, "lam": 0.003123}}
    }
    assert block.startswith("# tuned by sweep tune-1 (mnist_tune)") and "no confirmation runs yet" in printed
    assert {p.name for p in (tmp_path / "first").iterdir()} == {
        f"{name}.{ext}"
        for name, exts in (("tuning_trials", ("md", "tex", "csv")), ("tuning_history", ("png", "pdf")))
        for ext in exts
    }

    log_runs(uri, "grokbench/mnist_tuned", confirmation(wd_base=0.01, wd_align=0.01, lam_align=1e-3))
    assert tuning_main([*args, str(tmp_path / "placeholders")]) == 2
    assert "the confirmation ran baseline at wd=0.01" in capsys.readouterr().err
    assert not (tmp_path / "placeholders").exists()  # nothing half-written

    log_runs(uri, "grokbench/mnist_tuned", confirmation(seeds=(3, 4, 5)))  # beside the placeholders' runs
    assert tuning_main([*args, str(tmp_path / "tuned")]) == 0
    table = (tmp_path / "tuned" / "table1_tuned.md").read_text()
    assert "### Table 1, tuned — Cross-entropy" in table
    assert "| Baseline (wd=0.3123) | 3/3 |" in table and "| GrokAlign (wd=0.05234, λ=0.003123) | 3/3 |" in table
    assert "*Baseline: 3 run(s) at other settings left out*" in table  # the placeholders
    assert (tmp_path / "tuned" / "table1_tuned.csv").is_file() and (tmp_path / "tuned" / "table1_tuned.tex").is_file()


# ---- the sweep files -------------------------------------------------------------------------------------------------


def test_mnist_ce_runs_table_1s_cross_entropy_trials_at_ten_seeds_and_150000_updates():
    trials = load_sweep("mnist_ce").trials()
    assert len(trials) == 4 * 10 and {c.seed for c in trials} == set(range(10))
    assert all((c.loss, c.max_epochs) == ("ce", 37500) for c in trials)
    table1 = {trial_key(c) for c in load_sweep("mnist").trials() if c.loss == "ce"}
    assert {trial_key(c) for c in trials if c.seed < 5} == table1  # the paper's settings, as mnist.yaml has them


def test_the_tuning_searches_weight_decay_and_each_strength_alike_on_a_seed_of_its_own():
    tune, tuned = load_sweep("mnist_tune"), load_sweep("mnist_tuned")
    space = tune.search.space
    assert set(space) == {"baseline", "grokalign", "grokfast", "adversarial"} == set(tuned.methods)
    for method, ranges in space.items():
        wd = ranges["weight_decay"]
        assert (wd.low, wd.high, wd.log) == (1e-3, 30.0, True)
        assert set(ranges) == ({"weight_decay"} if method == "baseline" else {"weight_decay", "lam"})
    examples = [search_example(tune, m) for m in space]
    assert {(c.loss, c.seed, c.max_epochs) for c in examples} == {("ce", 100, 5000)}
    assert {c.method_settings.grokfast_alpha for c in examples if c.method == "grokfast"} == {0.8}
    confirmed = tuned.trials()
    assert {c.seed for c in confirmed} >= set(range(5)) and 100 not in {c.seed for c in confirmed}
    assert all((c.loss, c.max_epochs) == ("ce", 25000) for c in confirmed)
    assert all("weight_decay" in tuned.methods[m] for m in tuned.methods)


def test_a_search_runs_a_methods_fixed_settings_and_refuses_a_list_there(tmp_path):
    raw = yaml.safe_load((SWEEPS / "mnist_tune.yaml").read_text())
    raw["methods"]["grokfast"] = {"grokfast_alpha": 0.5}
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert search_example(load_sweep(str(path)), "grokfast").method_settings.grokfast_alpha == 0.5
    raw["methods"]["grokfast"] = {"grokfast_alpha": [0.5, 0.9]}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SweepError, match=r"methods\.grokfast\.grokfast_alpha: a search runs each method at fixed"):
        load_sweep(str(path))


# ---- Optuna over several settings, through Ray's searcher (no cluster) ---------------------------------------------


def test_ray_optuna_search_proposes_every_searched_setting_jointly_within_its_range():
    from grokbench.sweep.execution import optuna_search, search_space

    spec = load_sweep("mnist_tune")
    searcher = optuna_search(spec.search.seed)
    assert searcher.set_search_properties("objective", "min", search_space(spec, "grokalign", None))
    proposed = []
    for i in range(14):  # past Optuna's 10 random start-up trials, into TPE's model
        config = searcher.suggest(str(i))["trial"]["config"]
        proposed.append((config["weight_decay"], config["lam"]))
        # a made-up objective with its best at weight decay 0.1, λ 1e-3
        searcher.on_trial_complete(
            str(i), {"objective": (math.log10(config["weight_decay"]) + 1) ** 2 + (math.log10(config["lam"]) + 3) ** 2}
        )
    assert all(1e-3 <= wd <= 30 and 1e-5 <= lam <= 1 for wd, lam in proposed)
    assert len(set(proposed)) == 14
    sampler = searcher._ot_study.sampler
    assert sampler._multivariate and sampler._constant_liar


# ---- the whole path, on a real local Ray and SQLite store (slow) ---------------------------------------------------


@pytest.mark.slow
def test_tune_paste_confirm_and_table_on_a_real_sweep(local_ray, tmp_path, migrated_store, capsys):
    from grokbench.sweep.driver import SweepOptions, run_sweep

    shutil.copy(migrated_store, tmp_path / "mlflow.db")
    uri, storage = f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "results")
    common = {
        "task": "xor",
        "budget": {"max_epochs": 150},
        "base": {"eval_every": 10, "hidden": 128},  # a quarter of XOR's hidden units: seconds saved a trial
        "resources": {"cpus_per_trial": 1},
        "checkpoint_every": 40,
    }
    tune = tmp_path / "tune.yaml"
    tune.write_text(
        yaml.safe_dump(
            {
                **common,
                "name": "tune",
                "base": {**common["base"], "seed": 7},
                "methods": {"baseline": {}, "grokalign": {}},
                "search": {
                    "num_samples": 2,
                    "seed": 0,
                    "space": {
                        "baseline": {"weight_decay": {"low": 0.01, "high": 1.0}},
                        "grokalign": {"weight_decay": {"low": 0.01, "high": 1.0}, "lam": {"low": 1e-4, "high": 1e-1}},
                    },
                },
            }
        )
    )
    out = io.StringIO()
    assert run_sweep(load_sweep(str(tune)), SweepOptions(tracking_uri=uri, storage=storage), out=out) == 0
    block = out.getvalue()[out.getvalue().index("# tuned by sweep") :].split("\n\n")[0]
    confirm = tmp_path / "confirm.yaml"
    confirm.write_text(yaml.safe_dump({**common, "name": "confirm", "grid": {"seed": [0, 1]}}) + block + "\n")
    assert run_sweep(load_sweep(str(confirm)), SweepOptions(tracking_uri=uri, storage=storage)) == 0
    capsys.readouterr()
    out_dir = tmp_path / "tables"
    assert (
        tuning_main(
            ["--tracking-uri", uri, "--tuning", "tune", "--confirm", "confirm", "--out", str(out_dir), "--no-log"]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert block in printed  # the analysis prints from the store what the sweep printed at its end
    table = (out_dir / "table1_tuned.md").read_text()
    assert re.search(r"\| Baseline \(wd=[\d.e-]+\) \| \d/2 \|", table), table
    assert re.search(r"\| GrokAlign \(wd=[\d.e-]+, λ=[\d.e-]+\) \| \d/2 \|", table), table
    assert {p.name for p in out_dir.iterdir()} >= {
        "table1_tuned.md",
        "tuning_trials.csv",
        "tuning_history.png",
        "search_best.md",
    }
