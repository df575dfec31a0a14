"""analysis.tables and its figures on polynomial runs: real trials of tiny versions of the two polynomial sweeps,
logged to a real SQLite MLflow store by the sweep's own MLflow callback (run in this process, without Ray)."""

import shutil
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.tables import main as tables_main
from grokbench.sweep.keys import experiment_name
from grokbench.sweep.mlflow_store import TrackingStore
from grokbench.sweep.plan import placed
from grokbench.sweep.spec import load_sweep
from grokbench.sweep.tracking import TrialRuns
from grokbench.sweep.trainable import curve_point
from grokbench.train import Trial

# Kumar et al.'s problem in 8 dimensions on 40 points: at α = 0.25 it groks at epoch ≈190 and reaches the strict
# threshold by ≈220; at α = 1 it groks at ≈650 and not the strict one within the budget; at α = 4 neither
TINY = """
task: polynomial
budget: {max_epochs: 700}
base: {dim: 8, train_size: 40, test_size: 60, width: 20, probe_size: 16, memorise_threshold: 0.1, alpha: 1.0,
       eval_every: 20}
"""
SWEEPS = {
    "polynomial_alpha": TINY
    + """
grid: {seed: [0, 1], alpha: [0.25, 1.0, 4.0]}
methods: {baseline: {}}
""",
    # Grokfast at λ = 1 groks about twice as fast; GrokAlign at λ = 0.1 holds the test loss up: never grokked; the
    # baseline's second arm takes Grokfast's effective step, (1 + λ)·η = 2·N/α² = 40
    "polynomial_methods": TINY
    + """
grid: {seed: [0, 1]}
methods: {baseline: {arms: [{}, {lr: 40.0}]}, grokalign: {lam: 0.1}, grokfast: {lam: 1.0, grokfast_alpha: 0.8}}
""",
}


def log_sweep(uri, path):
    """Each trial of the sweep file run here and logged by the sweep's MLflow callback, handed the trial's results
    as Tune hands them (a curve point per evaluation, then the summary)."""
    spec = load_sweep(str(path))
    callback = TrialRuns(uri, TrackingStore(uri).prepare_experiment(experiment_name(spec.name)), f"{spec.name}-test")
    for cfg in spec.trials():
        cfg = placed(cfg, spec)
        tune_trial = SimpleNamespace(config={"trial": {"config": cfg.to_dict()}})
        callback.on_trial_start(0, [], tune_trial)
        trial, curve = Trial(cfg), []
        summary = trial.run(callback=lambda ev, _, curve=curve: curve.append(curve_point(ev)))
        callback.on_trial_result(0, [], tune_trial, {"step": trial.step, "curve": curve, "summary": summary})
        callback.on_trial_complete(0, [], tune_trial)


# every test here reads the same tiny real sweeps, whose training takes seconds: the slow tier
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tmp_path_factory, migrated_store):
    path = tmp_path_factory.mktemp("polynomial") / "mlflow.db"
    shutil.copy(migrated_store, path)
    for name, text in SWEEPS.items():
        sweep_file = path.parent / f"{name}.yaml"
        sweep_file.write_text(f"name: {name}\n{text}")
        log_sweep(f"sqlite:///{path}", sweep_file)
    return path


@pytest.fixture
def uri(store, tmp_path):
    shutil.copy(store, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def summaries(uri, experiment):
    """Each run's logged figures, read with MLflow's own client: the hand computations' input."""
    client = mlflow.MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(experiment_name(experiment)).experiment_id
    rows = [
        {**run.data.metrics, **run.data.params, "status": run.data.tags["status"]}
        for run in client.search_runs([experiment_id])
    ]
    return pd.DataFrame(rows).astype({"alpha": float, "seed": int})


def tables(uri, tmp_path, experiment, *flags):
    out = tmp_path / experiment
    assert tables_main(["--tracking-uri", uri, "--experiment", experiment, "--out", str(out), "--no-log", *flags]) == 0
    return out


def read(out, name):
    return pd.read_csv(out / f"{name}.csv", dtype=str, keep_default_na=False)


def test_the_alpha_sweep_tables_each_event_per_alpha_with_the_strict_threshold_censored_honestly(uri, tmp_path):
    runs = summaries(uri, "polynomial_alpha")
    assert (runs["status"] == "grokked").sum() == 4 and runs["epochs_to_grok_strict"].notna().sum() == 2
    out = tables(uri, tmp_path, "polynomial_alpha")
    events = read(out, "events").set_index("alpha")
    assert list(events.index) == ["0.25", "1", "4"] and set(events["Method"]) == {"Baseline"}
    for alpha, row in events.iterrows():
        ran = runs[runs["alpha"] == float(alpha)]
        for event, reached in (("memorise", "memorised"), ("grok", "grokked"), ("grok_strict", "grok_strict")):
            done = ran[f"epochs_to_{event}"].dropna()
            assert row[reached] == f"{len(done)}/2"
            if len(done) == 2:  # every seed reached it: mean ± std (median)
                mean, std, median = done.mean(), done.std(), done.median()
                assert row[f"epochs to {event}"] == f"{mean:.3g} ± {std:.2g} (med {median:.3g})"
            elif not len(done):  # none did: censored where each ended, the budget
                assert row[f"epochs to {event}"] == "> 700 (2 of 2 censored)"
    # α = 1 grokked, but not at the strict threshold: censored there at the budget
    assert events.loc["1", "grokked"] == "2/2" and events.loc["1", "grok_strict"] == "0/2"
    # Table 1 has a row per α, its steps and seconds; no accuracy anywhere
    table1 = read(out, "table1_mse")
    assert list(table1["alpha"]) == ["0.25", "1", "4"] and list(table1["grokked"]) == ["2/2", "2/2", "0/2"]
    strict = read(out, "table1_mse_grok_strict")
    assert list(strict["grokked"]) == ["2/2", "0/2", "0/2"]
    assert "further event grok_strict" in (out / "table1_mse_grok_strict.md").read_text()
    trials = read(out, "trials")
    assert "final test acc" not in trials and "final test loss rel" in trials
    finals = sorted(float(v) for v in trials["final test loss rel"])
    assert finals == pytest.approx(sorted(runs["final_test_loss_rel"]), abs=5e-5)
    assert sorted(trials["steps to grok_strict"]) == sorted(
        "—" if np.isnan(v) else f"{int(v):,}" for v in runs["steps_to_grok_strict"]
    )


def test_the_geometry_table_holds_the_kernel_diagnostics_at_the_events(uri, tmp_path):
    out = tables(uri, tmp_path, "polynomial_alpha")
    geometry = read(out, "geometry").set_index("alpha")
    assert "ntk_distance @grok" in geometry and not any("centroid" in c for c in geometry)
    client = mlflow.MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(experiment_name("polynomial_alpha")).experiment_id
    quick = client.search_runs([experiment_id], "params.alpha = '0.25'")
    at_grok = [
        TrackingStore(uri).curve(run.info.run_id, "ntk_distance")[int(run.data.metrics["steps_to_grok"])]
        for run in quick
    ]
    assert len(at_grok) == 2 and geometry.loc["0.25", "ntk_distance @grok"] == f"{np.median(at_grok):.3g}"
    assert geometry.loc["4", "ntk_distance @grok"] == "—"  # never grokked: no moment to read


def test_the_authors_gap_is_read_off_the_loss_curves_at_their_absolute_threshold(uri, tmp_path):
    gap = read(tables(uri, tmp_path, "polynomial_alpha"), "gap").set_index("alpha")
    client = mlflow.MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(experiment_name("polynomial_alpha")).experiment_id
    for alpha in ("0.25", "4"):
        crossings = []
        for run in client.search_runs([experiment_id], f"params.alpha = '{float(alpha)}'"):
            firsts = [
                min((m.step for m in client.get_metric_history(run.info.run_id, name) if m.value < 0.1), default=None)
                for name in ("train_loss", "test_loss")
            ]  # full batch: a step an epoch
            crossings.append(firsts)
        trains, tests = zip(*crossings, strict=False)
        for column, firsts in (("train_loss < 0.1", trains), ("test_loss < 0.1", tests)):
            reached = [f for f in firsts if f is not None]
            assert gap.loc[alpha, column] == f"{len(reached)}/2"
        gaps = [b - a for a, b in crossings if a is not None and b is not None]
        if len(gaps) == 2:
            assert gap.loc[alpha, "gap (epochs)"] == (
                f"{np.mean(gaps):.3g} ± {np.std(gaps, ddof=1):.2g} (med {np.median(gaps):.3g}) over 2"
            )
        else:
            assert gap.loc[alpha, "gap (epochs)"] == "—" and not gaps
    # the quick α reaches both, and the test threshold later than the train one; the lazy α never the test one
    assert gap.loc["0.25", "test_loss < 0.1"] == "2/2" and gap.loc["4", "test_loss < 0.1"] == "0/2"
    assert gap.loc["4", "epochs to test_loss < 0.1"] == "> 700 (2 of 2 censored)"


def test_the_test_loss_at_memorising_is_set_beside_each_runs_kernel_line(uri, tmp_path):
    reference = read(tables(uri, tmp_path, "polynomial_alpha"), "reference").set_index("alpha")
    client = mlflow.MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(experiment_name("polynomial_alpha")).experiment_id
    for alpha in ("0.25", "1", "4"):
        levels, at_mem = [], []
        for run in client.search_runs([experiment_id], f"params.alpha = '{float(alpha)}'"):
            history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "test_loss_rel")}
            line = client.get_metric_history(run.info.run_id, "kernel_regression_test_loss_rel")
            levels.append(max(line, key=lambda m: m.step).value)
            memorised = run.data.metrics.get("steps_to_memorise")
            if memorised is not None:
                at_mem.append((levels[-1], history[int(memorised)]))
        row = reference.loc[alpha]
        assert row["memorised"] == f"{len(at_mem)}/2"
        assert row["kernel_regression_test_loss_rel"] == f"{np.median(levels):.3g}"
        if at_mem:
            ratios = [test / level for level, test in at_mem]
            assert row["test_loss_rel @mem"] == f"{np.median([test for _, test in at_mem]):.3g}"
            assert row["@mem ÷ reference (range)"] == (f"{np.median(ratios):.3g} ({min(ratios):.3g}–{max(ratios):.3g})")
        else:
            assert row["test_loss_rel @mem"] == "—"
    # in this tiny fixture (the Fig. 1 setting) the test loss has risen above the line by the time it memorises
    assert reference.loc["0.25", "memorised"] == "2/2"
    assert float(reference.loc["0.25", "@mem ÷ reference (range)"].split()[0]) > 1


def test_the_methods_table_gives_speed_ups_and_bounds_where_censored(uri, tmp_path):
    runs = summaries(uri, "polynomial_methods")
    out = tables(uri, tmp_path, "polynomial_methods")
    table = read(out, "table1_mse").set_index("Method")
    assert list(table.index) == ["Baseline", "Baseline (lr=40)", "GrokAlign", "Grokfast"] and "alpha" not in table
    base, fast = runs.query("method == 'baseline' and lr == '20.0'"), runs[runs["method"] == "grokfast"]
    assert len(base) == 2
    # every trial of both rows grokked: the ratio of geometric means, its interval and p from one Welch test
    ratio = np.exp(np.log(base["time_to_grok_s"]).mean() - np.log(fast["time_to_grok_s"]).mean())
    welch = stats.ttest_ind(np.log(base["time_to_grok_s"]), np.log(fast["time_to_grok_s"]), equal_var=False)
    low, high = np.exp(welch.confidence_interval(0.95))
    assert table.loc["Grokfast", "speed-up (time)"] == f"×{ratio:.2f} [{low:.2f}, {high:.2f}] p={welch.pvalue:.2g}"
    # GrokAlign never grokked: its median only exceeds the budget, so its speed-up is a bound
    assert table.loc["GrokAlign", "grokked"] == "0/2"
    steps_bound = base["steps_to_grok"].median() / 700
    assert table.loc["GrokAlign", "speed-up (steps)"].startswith(f"≤ ×{steps_bound:.2f} p=")
    # at the strict threshold the baseline is censored at the budget: Grokfast's speed-up is at least its bound
    strict = read(out, "table1_mse_grok_strict").set_index("Method")
    assert strict.loc["Baseline", "grokked"] == "0/2" and strict.loc["Grokfast", "grokked"] == "2/2"
    strict_bound = 700 / fast["steps_to_grok_strict"].median()
    assert strict.loc["Grokfast", "speed-up (steps)"].startswith(f"≥ ×{strict_bound:.2f} p=")
    events = read(out, "events").set_index("Method")
    assert events.loc["Grokfast", "grok_strict"] == "2/2" and events.loc["Baseline", "grok_strict"] == "0/2"


def test_a_baseline_at_another_learning_rate_is_a_row_of_its_own_against_the_plain_baseline(uri, tmp_path):
    runs = summaries(uri, "polynomial_methods").query("method == 'baseline'")
    base, faster = (runs[runs["lr"] == lr]["steps_to_grok"] for lr in ("20.0", "40.0"))
    table = read(tables(uri, tmp_path, "polynomial_methods"), "table1_mse").set_index("Method")
    assert table.loc["Baseline", "grokked"] == "2/2" and table.loc["Baseline (lr=40)", "grokked"] == "2/2"
    ratio = np.exp(np.log(base).mean() - np.log(faster).mean())
    assert ratio > 1.5  # twice the step, about half the epochs: the control Grokfast's gain is read against
    assert table.loc["Baseline (lr=40)", "speed-up (steps)"].startswith(f"×{ratio:.2f}")  # against the plain one


def test_a_smaller_budget_censors_the_strict_event_too(uri, tmp_path):
    quick = summaries(uri, "polynomial_alpha").query("alpha == 0.25")
    budget = int(quick["epochs_to_grok"].max())  # both grokked by then, neither reached the strict threshold
    assert (quick["epochs_to_grok_strict"] > budget).all()
    out = tables(uri, tmp_path, "polynomial_alpha", "--max-epochs", str(budget))
    events = read(out, "events").set_index("alpha")
    assert events.loc["0.25", "grokked"] == "2/2" and events.loc["0.25", "grok_strict"] == "0/2"
    assert events.loc["0.25", "epochs to grok_strict"] == f"> {budget} (2 of 2 censored)"


def test_figures_come_from_the_curves_the_task_declares(uri, tmp_path):
    out = tables(uri, tmp_path, "polynomial_alpha", "--figures")
    for name in ("polynomial_curves", "polynomial_diagnostics", "epochs_to_grok_vs_alpha"):
        for suffix in ("png", "pdf"):
            assert (out / f"{name}.{suffix}").stat().st_size > 5000
    assert not (out / "accuracy_vs_steps.png").exists() and not (out / "geometry.png").exists()
    methods = tables(uri, tmp_path, "polynomial_methods", "--figures")
    assert (methods / "polynomial_curves.png").exists() and not (methods / "epochs_to_grok_vs_alpha.png").exists()


def test_the_learning_curves_draw_the_reference_line_and_the_event_figure_marks_censoring(uri):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis.curve_figures import _event_line, _learning_lines, epoch_histories, learning_figure, reference_line
    from analysis.groups import run_groups
    from analysis.runs import load_runs
    from grokbench.tasks import TASKS

    runs, _ = load_runs(uri, ["polynomial_alpha"])
    curves = TASKS["polynomial"].presentation
    lazy = runs[runs["task.alpha"] == 4.0]
    hist = epoch_histories(uri, lazy, (curves.train, curves.test, curves.reference))
    _, ax = plt.subplots()
    _learning_lines(ax, run_groups(lazy)[0], hist, curves, "C0")
    reference_line(ax, lazy, hist, curves.reference)
    reference = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
    levels = lazy["final_kernel_regression_test_loss_rel"]  # each trial's, as its summary carries it
    assert len(reference) == 1 and reference[0].get_ydata()[0] == pytest.approx(levels.median())
    assert max(hist[lazy["run_id"].iloc[0]].index) == 700  # indexed by epoch
    figure = learning_figure(lazy, hist, curves, ["task.alpha"])
    (threshold,) = [line for line in figure.axes[0].get_lines() if line.get_label().startswith("grokking threshold")]
    assert list(threshold.get_ydata()) == [0.1, 0.1]  # the relative test loss the criterion reads, below 0.1
    _, ax = plt.subplots()
    _event_line(ax, runs, "task.alpha", "grok", "C0", "grok")
    censored = [c for c in ax.collections if len(c.get_offsets()) and c.get_facecolors().size == 0]
    points = np.vstack([c.get_offsets() for c in censored])
    assert sorted(map(tuple, points)) == [(4.0, 700.0), (4.0, 700.0)]  # α = 4's seeds, where their runs ended
    median_line = ax.get_lines()[0]
    assert list(median_line.get_xdata()) == [0.25, 1.0]  # no median at α = 4: none of its seeds grokked
    plt.close("all")
