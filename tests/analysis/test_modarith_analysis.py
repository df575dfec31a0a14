"""The modular-arithmetic tables and figures (GrokAlign Figs. 8–9, Grokfast's headline) from real SQLite MLflow
stores: runs with real modarith settings and known outcomes for the tables, and real tiny trials for the figures."""

import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric, Param, RunTag

from analysis.runs import variant_and_condition
from analysis.tables import main as tables_main
from grokbench.config import TrialConfig
from grokbench.resolve import config_of, resolve
from grokbench.sweep.keys import KEY_TAG, SWEEP_TAG, trial_key
from grokbench.sweep.mlflow_store import TrackingStore

# one small layer on p = 11; at lr 1e-2 (REAL) it memorises within 200 epochs (it does not generalise on 60
# equations); the hand-made trials keep the preset's lr, so that their rows are named by what they vary alone
TINY = dict(
    task="modarith",
    preset="nanda",
    p=11,
    train_fraction=0.5,
    d_model=16,
    n_heads=2,
    d_mlp=32,
    eval_every=20,
    max_epochs=200,
)
REAL = dict(TINY, lr=1e-2)


def config(**settings) -> TrialConfig:
    return resolve(config_of(**settings))


def log_run(client, experiment_id: str, cfg: TrialConfig, summary: dict, evaluations: list[tuple[int, dict]]):
    """A trial's run as a sweep logs it: its settings as params, its tags, its curves at each evaluation's step and
    its summary's numbers."""
    tags = {
        SWEEP_TAG: "modarith-test-1",
        KEY_TAG: trial_key(cfg),
        "status": summary["status"],
        "method": cfg.method,
        "loss": cfg.loss,
        "seed": str(cfg.seed),
        "task": cfg.task,
    }
    run = client.create_run(experiment_id, tags=tags)
    params = [Param(k, "None" if v is None else str(v)) for k, v in sorted(cfg.to_dict().items())]
    metrics = [Metric(name, float(value), 0, step) for step, values in evaluations for name, value in values.items()]
    metrics += [
        Metric(k, float(v), 0, summary["steps"])
        for k, v in summary.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    for start in range(0, len(metrics), 900):  # MLflow's batch limit is 1 000 metrics
        client.log_batch(
            run.info.run_id,
            metrics=metrics[start : start + 900],
            params=params if not start else [],
            tags=[RunTag("x", "y")],
        )
    client.set_terminated(run.info.run_id)


def known_outcome(steps_to_grok: int, seconds_per_step: float = 0.01) -> tuple[dict, list]:
    """A trial that memorised at step 100 and grokked at `steps_to_grok`, with Gini curves 0.1 + step / 1e5
    (embedding) and 0.2 + step / 1e5 (unembedding)."""
    seconds = steps_to_grok * seconds_per_step
    summary = {
        "status": "grokked",
        "steps": steps_to_grok,
        "epochs": steps_to_grok,
        "train_time_s": seconds,
        "steps_to_memorise": 100,
        "epochs_to_memorise": 100,
        "time_to_memorise_s": 100 * seconds_per_step,
        "steps_to_grok": steps_to_grok,
        "epochs_to_grok": steps_to_grok,
        "time_to_grok_s": seconds,
        "grok_phase_time_s": seconds - 100 * seconds_per_step,
        "final_test_acc": 0.96,
    }
    evaluations = [
        (
            step,
            {
                "train_acc": float(step >= 100),
                "test_acc": 0.96 if step == steps_to_grok else 0.1,
                "train_time_s": step * seconds_per_step,
                "gini_embed": 0.1 + step / 1e5,
                "gini_unembed": 0.2 + step / 1e5,
            },
        )
        for step in (0, 100, steps_to_grok)
    ]
    return summary, evaluations


def store_with(tmp_path, migrated_store, name: str, trials: list[tuple[TrialConfig, int]]) -> str:
    shutil.copy(migrated_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = TrackingStore(uri).prepare_experiment(f"grokbench/{name}")
    client = mlflow.MlflowClient(uri)
    for cfg, steps in trials:
        log_run(client, experiment_id, cfg, *known_outcome(steps))
    return uri


def table(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False).set_index("Method")


def geometric_mean(values) -> float:
    return float(np.exp(np.mean(np.log(values))))


def test_a_trial_is_named_by_the_settings_its_task_presents_where_they_leave_the_presets_defaults():
    def labels(**settings):
        cfg = config(**settings)
        return variant_and_condition({k: "None" if v is None else str(v) for k, v in cfg.to_dict().items()})

    assert labels(task="modarith", preset="nanda") == ("", "")
    assert labels(task="modarith") == ("", "")  # the default is the Nanda preset
    assert labels(task="modarith", freeze_embeddings=True) == ("freeze_embeddings=True", "freeze_embeddings=True")
    assert labels(task="modarith", preset="grokfast") == ("", "")  # its weight decay 0 is its own default
    assert labels(task="modarith", preset="grokfast", weight_decay=0.01) == ("weight_decay=0.01", "")
    assert labels(task="modarith", preset="nanda", weight_decay=0.01) == ("weight_decay=0.01", "")  # off 1.0
    assert labels(
        task="modarith", preset="grokfast", method="grokfast", grokfast_variant="ma", lam=5.0, weight_decay=0.01
    ) == ("variant=ma, weight_decay=0.01", "")
    # MNIST presents its weight decay (a weight-decay control is a row of its own), beside the method's own settings
    assert labels(task="mnist", method="grokalign", grokalign_subset=32, weight_decay=0.1) == (
        "subset=32, weight_decay=0.1",
        "",
    )
    assert labels(task="mnist", method="grokalign", grokalign_subset=32) == ("subset=32", "")
    # polynomial's learning rate is read against N/α² at the trial's own α and width
    assert labels(task="polynomial", alpha=4.0) == labels(task="polynomial", width=50, alpha=0.5) == ("", "")
    assert labels(task="polynomial", lr=13000.0) == ("lr=13000", "")
    assert labels(task="polynomial", alpha=2.0, lr=500.0) == ("lr=500", "")  # N/α² would be 125


def test_frozen_and_trained_embeddings_are_rows_of_their_own_each_against_its_own_baseline(tmp_path, migrated_store):
    trials = []
    for frozen, baseline_steps, grokalign_steps in (
        (False, (10_000, 12_000), (11_000, 13_000)),
        (True, (8_000, 9_000), (2_000, 3_000)),
    ):
        for seed in (0, 1):
            common = dict(TINY, seed=seed, freeze_embeddings=frozen)
            trials += [
                (config(**common), baseline_steps[seed]),
                (config(**common, method="grokalign", lam=1e-2), grokalign_steps[seed]),
            ]
    uri = store_with(tmp_path, migrated_store, "modadd", trials)
    out = tmp_path / "out"
    assert tables_main(["--tracking-uri", uri, "--experiment", "modadd", "--out", str(out), "--no-log"]) == 0
    rows = table(out / "table1_ce.csv")
    frozen = "freeze_embeddings=True"
    assert list(rows.index) == ["Baseline", "GrokAlign", f"Baseline ({frozen})", f"GrokAlign ({frozen})"]
    assert all(rows["grokked"] == "2/2") and all(rows["seeds"] == "0, 1")
    assert rows.loc[f"Baseline ({frozen})", "speed-up (steps)"] == "×1"  # the frozen rows' own baseline
    # GrokAlign with frozen embeddings against the frozen baseline: √(8 000 · 9 000) / √(2 000 · 3 000) = √12
    assert float(rows.loc[f"GrokAlign ({frozen})", "steps_ratio"]) == pytest.approx(12**0.5, rel=1e-5)
    assert float(rows.loc["GrokAlign", "steps_ratio"]) == pytest.approx(
        geometric_mean([10_000, 12_000]) / geometric_mean([11_000, 13_000]), rel=1e-5
    )
    assert "baseline of the row's own condition" in (out / "table1_ce.md").read_text()
    # the Gini coefficients at memorisation (step 100) and at grokking, median over the two seeds
    gini = table(out / "gini.csv")
    assert gini.loc[f"Baseline ({frozen})", "gini_embed @grok"] == "0.185"  # 0.1 + 8 500 / 1e5
    assert gini.loc[f"GrokAlign ({frozen})", "gini_unembed @mem"] == "0.201"
    trials_rows = pd.read_csv(out / "trials.csv", dtype=str, keep_default_na=False)
    assert sorted(trials_rows["method"]) == sorted(
        ["Baseline", "GrokAlign", f"Baseline ({frozen})", f"GrokAlign ({frozen})"] * 2
    )


def test_grokfasts_arms_and_the_weight_decay_control_are_compared_with_the_baseline_without_weight_decay(
    tmp_path, migrated_store
):
    baseline = dict(TINY, preset="grokfast", batch_size=16)
    trials = [(config(**baseline, seed=s), steps) for s, steps in enumerate((39_000, 40_000, 41_000))]
    trials.append((config(**baseline, seed=0, weight_decay=0.01), 20_000))
    grokfast = dict(baseline, method="grokfast")
    ma = dict(grokfast, grokfast_variant="ma", lam=5.0, weight_decay=0.01)
    ema = dict(grokfast, grokfast_alpha=0.98, lam=2.0, weight_decay=0.005)
    trials += [(config(**ma, seed=s), steps) for s, steps in enumerate((800, 790, 810))]
    trials += [(config(**ema, seed=s), steps) for s, steps in enumerate((900, 910, 920))]
    uri = store_with(tmp_path, migrated_store, "modmul_grokfast", trials)
    out = tmp_path / "out"
    assert tables_main(["--tracking-uri", uri, "--experiment", "modmul_grokfast", "--out", str(out), "--no-log"]) == 0
    rows = table(out / "table1_ce.csv")
    ma_row = "Grokfast (λ=5, variant=ma, weight_decay=0.01)"
    ema_row = "Grokfast (λ=2, alpha=0.98, weight_decay=0.005)"
    assert list(rows.index) == ["Baseline", "Baseline (weight_decay=0.01)", ema_row, ma_row]
    assert rows.loc["Baseline", "speed-up (steps)"] == "×1"
    assert (rows.loc["Baseline (weight_decay=0.01)", "grokked"], rows.loc["Baseline (weight_decay=0.01)", "seeds"]) == (
        "1/1",
        "0",
    )
    reference = geometric_mean([39_000, 40_000, 41_000])
    assert float(rows.loc["Baseline (weight_decay=0.01)", "steps_ratio"]) == pytest.approx(reference / 20_000, rel=1e-5)
    assert float(rows.loc[ma_row, "steps_ratio"]) == pytest.approx(
        reference / geometric_mean([800, 790, 810]), rel=1e-5
    )
    assert float(rows.loc[ema_row, "steps_ratio"]) == pytest.approx(
        reference / geometric_mean([900, 910, 920]), rel=1e-5
    )


def real_trials(tmp_path, migrated_store) -> str:
    """Four real tiny trials (baseline and GrokAlign, trained and frozen embeddings), logged as a sweep logs them."""
    from grokbench.train import Trial

    shutil.copy(migrated_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = TrackingStore(uri).prepare_experiment("grokbench/modadd")
    client = mlflow.MlflowClient(uri)
    for method, lam in (("baseline", None), ("grokalign", 1e-2)):
        for frozen in (False, True):
            cfg = config(**REAL, method=method, lam=lam, freeze_embeddings=frozen)
            evaluations = []
            summary = Trial(cfg).run(
                callback=lambda ev, trial, evaluations=evaluations: evaluations.append(
                    (ev.step, {**ev.metrics, "train_time_s": ev.train_time_s})
                )
            )
            log_run(client, experiment_id, cfg, summary, evaluations)
    return uri


@pytest.mark.slow  # four real trials, then their figures: seconds
def test_accuracy_and_gini_figures_of_real_trials_use_a_log_step_axis_a_panel_per_embedding_and_mark_memorising(
    tmp_path, migrated_store
):
    import matplotlib

    matplotlib.use("Agg")
    from analysis.figures import accuracy_figure, curves_figure
    from analysis.plotting import histories
    from analysis.runs import load_runs, presentation

    uri = real_trials(tmp_path, migrated_store)
    runs, _ = load_runs(uri, ["modadd"])
    assert set(runs["status"]) == {"censored"} and runs["steps_to_memorise"].notna().all()  # 60 equations: no grokking
    shown = presentation(runs)
    hist = histories(uri, runs, shown.plotted)
    accuracy = accuracy_figure(runs, hist, "step", shown)
    assert [ax.get_title() for ax in accuracy.axes] == ["loss ce", "loss ce, freeze_embeddings=True"]
    assert all(ax.get_xscale() == "log" for ax in accuracy.axes)
    for ax, suffix in zip(accuracy.axes, (" (lr=0.01)", " (freeze_embeddings=True, lr=0.01)"), strict=False):
        lines = {line.get_label(): line.get_linestyle() for line in ax.get_lines()}
        assert lines[f"Baseline{suffix} train"] == lines[f"GrokAlign{suffix} train"] == "--"
        assert lines[f"GrokAlign{suffix} test"] == "-"
        assert lines["grokking threshold (0.95)"] == "--"  # modular arithmetic: test accuracy above 0.95
    gini = curves_figure(runs, hist, shown)
    assert [ax.get_title() for ax in gini.axes] == [
        "Gini coefficient of the embedding",
        "Gini coefficient of the unembedding",
    ]
    assert [ax.get_ylabel() for ax in gini.axes] == ["Gini coefficient"] * 2
    for ax in gini.axes:
        assert ax.get_xscale() == "log"
        memorised = [line for line in ax.get_lines() if line.get_marker() == "s"]
        assert sorted(float(line.get_xdata()[0]) for line in memorised) == sorted(runs["steps_to_memorise"])
        assert not [line for line in ax.get_lines() if line.get_marker() == "*"]  # none grokked: nothing marked
    out = tmp_path / "figures"
    assert (
        tables_main(
            [
                "--tracking-uri",
                uri,
                "--experiment",
                "modadd",
                "--out",
                str(out),
                "--figures",
                "--format",
                "md",
                "--no-log",
            ]
        )
        == 0
    )
    for name in ("accuracy_vs_steps", "accuracy_vs_seconds", "gini"):
        assert (out / f"{name}.png").stat().st_size > 5000 and (out / f"{name}.pdf").stat().st_size > 5000
    assert "Gini coefficients at memorisation" in (out / "gini.md").read_text()
