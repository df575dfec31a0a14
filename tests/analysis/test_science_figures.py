"""analysis.science_figures: Kumar et al.'s Fig. 3a and 3e figures and the init-scale figure, checked on hand-made
tables and drawn by `python -m analysis.tables --figures` from tiny real sweeps in a real SQLite MLflow store."""

import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest
from test_polynomial_analysis import log_sweep

from analysis.fig3a import ALPHA
from analysis.phase import phase_end_table, whole_wall_s
from analysis.runs import load_runs
from analysis.science_figures import EPSILON, grok_and_delay, phase_cells, phase_figure
from analysis.tables import main as tables_main
from grokbench.sweep.keys import experiment_name

TINY = "task: polynomial\nbase: {dim: 8, train_size: 40, test_size: 60, width: 20, probe_size: 16, "
SWEEPS = {
    # the kumar_fig3a cell on the tiny problem: three α, two draws, every trial its whole budget; and its σ arms
    "fig3a": TINY
    + """input_scaling: preactivation, target: square, loss_scaling: alpha_sq, lr_rule: n, lr_factor: 0.5,
       epsilon: 0.25, eval_every: 10, epochs_after_grok: 200, data_draw: per_seed}
budget: {max_epochs: 200}
grid: {seed: [0, 1], alpha: [0.25, 1.0, 4.0]}
methods: {baseline: {}}
""",
    "sigma": TINY
    + """input_scaling: preactivation, target: square, loss_scaling: alpha_sq, lr_rule: n, epsilon: 0.25,
       eval_every: 10, epochs_after_grok: 150, data_draw: per_seed, alpha: 1.0}
budget: {max_epochs: 150}
grid: {seed: [0, 1]}
methods: {baseline: {arms: [{init_scale: 0.5, lr_factor: 2.0}, {init_scale: 2.0, lr_factor: 0.125}]}}
""",
    # Fig. 3e's rule on the tiny problem: within 250 epochs the test MSE of (α 2, ε 0.1) never falls below 0.01
    "phase": TINY
    + """stop_rule: converged, lr_factor: 3.0, crossing_mse: 0.01, converge_tolerance: 1.0e-4, eval_every: 25}
budget: {max_epochs: 250}
grid: {seed: [0], alpha: [1.0, 2.0], epsilon: [0.1, 0.2]}
methods: {baseline: {}}
""",
}


@pytest.fixture(scope="module")
def store(tmp_path_factory, migrated_store):
    path = tmp_path_factory.mktemp("science") / "mlflow.db"
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


def test_phase_cells_take_the_authors_measure_and_censor_a_cell_that_never_crossed():
    runs = pd.DataFrame(
        {
            ALPHA: [0.8, 0.8, 1.6, 1.6, 1.6],
            EPSILON: [0.04, 0.08, 0.04, 0.08, 0.08],
            "final_train_mse_below_epoch": [100.0, 300.0, 50.0, 40.0, 40.0],
            "final_test_mse_below_epoch": [250.0, 200.0, -1.0, 90.0, 70.0],
        }
    )
    cells = phase_cells(runs)
    assert cells.loc[0.8, 0.04] == 150  # 250 − 100
    assert cells.loc[0.8, 0.08] == 0  # the test MSE crossed first: max(0, 200 − 300)
    assert np.isnan(cells.loc[1.6, 0.04])  # never below 0.1: censored, not 0
    assert cells.loc[1.6, 0.08] == 40  # two seeds: the median of 50 and 30
    assert list(cells.index) == [0.8, 1.6] and list(cells.columns) == [0.04, 0.08]


def test_the_phase_map_hatches_censored_cells_only_and_leaves_a_cell_still_running_blank():
    runs = pd.DataFrame(
        {
            "status": ["grokked", "censored", "running", "censored"],
            ALPHA: [0.8, 0.8, 1.6, 1.6],
            EPSILON: [0.04, 0.08, 0.04, 0.08],
            "final_train_mse_below_epoch": [100.0, 300.0, 50.0, 40.0],
            "final_test_mse_below_epoch": [250.0, -1.0, -1.0, -1.0],
        }
    )
    ax = phase_figure(runs).axes[0]
    crosses = sorted((t.get_position() for t in ax.texts if t.get_text() == "×"), key=lambda xy: (xy[1], xy[0]))
    assert crosses == [(1, 0), (1, 1)]  # (ε index, α index): (0.08, 0.8) and (0.08, 1.6); (0.04, 1.6) runs on
    assert np.ma.is_masked(ax.images[0].get_array()[1, 0])  # blank, not a colour
    assert ax.images[0].get_array()[0, 0] == 150


def test_grok_and_delay_count_censored_runs_at_their_end_and_an_early_grok_as_no_delay():
    runs = pd.DataFrame(
        {
            "status": ["grokked", "grokked", "censored", "censored"],
            "steps_to_grok": [1000.0, 300.0, np.nan, np.nan],
            "steps_to_memorise": [400.0, np.nan, 700.0, np.nan],
            "steps": [1000, 300, 5000, 5000],
        }
    )
    grok, delay = grok_and_delay(runs)
    assert grok.tolist() == [1000, 300, 5000, 5000]
    assert delay.tolist() == [600, 0, 4300, 5000]


def summaries(uri, experiment):
    client = mlflow.MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(experiment_name(experiment)).experiment_id
    return pd.DataFrame(
        [{**run.data.metrics, **run.data.params} for run in client.search_runs([experiment_id])]
    ).astype({"alpha": float, "epsilon": float})


@pytest.mark.slow  # the store's tiny sweeps take tens of seconds on a busy machine
def test_the_phase_cells_of_real_watched_runs(uri):
    logged = summaries(uri, "phase")
    crossed = logged[["final_train_mse_below_epoch", "final_test_mse_below_epoch"]]
    assert (crossed == -1).any(axis=1).sum() == 1  # one cell censored within the budget
    cells = phase_cells(load_runs(uri, ["phase"])[0])
    for _, run in logged.iterrows():
        train, test = run["final_train_mse_below_epoch"], run["final_test_mse_below_epoch"]
        expected = np.nan if min(train, test) < 0 else max(0.0, test - train)
        assert cells.loc[run["alpha"], run["epsilon"]] == pytest.approx(expected, nan_ok=True)


@pytest.mark.slow  # the store's tiny sweeps take tens of seconds on a busy machine
def test_the_end_table_and_the_cost_of_a_resumed_run_read_real_watched_runs(uri):
    client = mlflow.MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(experiment_name("phase")).experiment_id
    logged = client.search_runs([experiment_id])
    table = phase_end_table(load_runs(uri, ["phase"])[0])
    stats = {row["alpha"]: row for row in table.stats}
    for run in logged:
        alpha, epsilon = float(run.data.params["alpha"]), float(run.data.params["epsilon"])
        assert stats[alpha][f"epsilon={epsilon:g}"] == pytest.approx(run.data.metrics["final_test_loss"])
    # a trial continued from a checkpoint at a quarter of its steps, as the tracker logs it: its process ran the
    # other three quarters, so the whole run cost 4/3 of its wall_s
    first = logged[0]
    client.log_metric(first.info.run_id, "resumed_from_step", first.data.metrics["steps"] / 4)
    runs = load_runs(uri, ["phase"])[0]
    cost = whole_wall_s(runs).set_axis(runs["run_id"])
    assert cost[first.info.run_id] == pytest.approx(first.data.metrics["wall_s"] * 4 / 3)
    assert cost.drop(first.info.run_id).tolist() == runs.set_index("run_id")["wall_s"].drop(first.info.run_id).tolist()


@pytest.mark.slow  # three experiments' figures in two formats: several seconds
def test_the_figures_command_draws_each_experiments_own_figures(uri, tmp_path):
    drawn = {}
    for experiment in ("fig3a", "fig3a,sigma", "phase"):
        out = tmp_path / experiment.replace(",", "+")
        assert (
            tables_main(["--tracking-uri", uri, "--experiment", experiment, "--out", str(out), "--no-log", "--figures"])
            == 0
        )
        drawn[experiment] = {p.name for p in out.glob("*.png")}
    assert {"fig3a_loss_vs_alpha.png", "fig3a_movement_vs_alpha.png"} <= drawn["fig3a"]
    assert "fig3a_loss_vs_sigma.png" not in drawn["fig3a"]  # a single σ there
    assert {"fig3a_loss_vs_sigma.png", "fig3a_movement_vs_sigma.png"} <= drawn["fig3a,sigma"]
    assert "fig3e_phase_diagram.png" in drawn["phase"] and not any(n.startswith("fig3a") for n in drawn["phase"])
    phase = (tmp_path / "phase" / "fig3e_phase.md").read_text()  # the table beside the figure; fig3a has none
    assert "censored" in phase and "CPU-hours" in phase and not (tmp_path / "fig3a" / "fig3e_phase.md").exists()


@pytest.mark.slow  # reads the tiny sweeps' curves from the store
def test_the_movement_table_reads_both_sweeps_at_their_common_end_ordered_by_sigma_squared_alpha(uri, tmp_path):
    out = tmp_path / "both"
    assert tables_main(["--tracking-uri", uri, "--experiment", "fig3a,sigma", "--out", str(out), "--no-log"]) == 0
    table = pd.read_csv(out / "movement.csv", dtype=str, keep_default_na=False)
    assert table[["σ²·α", "alpha", "σ"]].values.tolist() == [
        ["0.25", "0.25", "1"],
        ["0.25", "1", "0.5"],
        ["1", "1", "1"],
        ["4", "1", "2"],
        ["4", "4", "1"],
    ]
    client = mlflow.MlflowClient(uri)
    expected = {}
    for experiment in ("fig3a", "sigma"):
        experiment_id = client.get_experiment_by_name(experiment_name(experiment)).experiment_id
        for run in client.search_runs([experiment_id]):
            key = (float(run.data.params["alpha"]), float(run.data.params["init_scale"]))
            # full batch: a step an epoch; the σ sweep's 150 epochs are the end both sweeps reached
            change, test = (
                max(
                    (m for m in client.get_metric_history(run.info.run_id, name) if m.step <= 150), key=lambda m: m.step
                )
                for name in ("weight_change", "test_loss_rel")
            )
            expected.setdefault(key, []).append((change.value**2, test.value))
    for _, row in table.iterrows():
        values = np.array(expected[(float(row["alpha"]), float(row["σ"]))])
        assert row["runs"] == str(len(values)) == "2"
        for column, v in zip(("‖θ − θ₀‖²/‖θ₀‖²", "test_loss_rel"), values.T, strict=True):
            assert row[column] == f"{np.median(v):.3g} ({v.min():.3g}–{v.max():.3g})"
    assert "epoch 150" in (out / "movement.md").read_text()


@pytest.mark.slow  # reads the tiny sweeps' curves from the store
def test_tables_of_a_sweep_over_the_init_scale_give_each_scale_its_own_row(uri, tmp_path):
    out = tmp_path / "sigma"
    assert tables_main(["--tracking-uri", uri, "--experiment", "sigma", "--out", str(out), "--no-log"]) == 0
    logged = summaries(uri, "sigma").astype({"init_scale": float})
    for name in ("events", "gap", "reference", "geometry"):
        table = pd.read_csv(out / f"{name}.csv", dtype=str, keep_default_na=False)
        # σ and the step-size factor paired with it: a row per σ, its two draws each
        assert table[["init_scale", "lr_factor"]].values.tolist() == [["0.5", "2"], ["2", "0.125"]], name
    events = pd.read_csv(out / "events.csv", dtype=str, keep_default_na=False).set_index("init_scale")
    for sigma, runs in logged.groupby("init_scale"):
        memorised = runs["steps_to_memorise"].notna().sum() if "steps_to_memorise" in runs else 0
        assert events.loc[f"{sigma:g}", "memorised"] == f"{memorised}/2"


@pytest.mark.slow  # reads the tiny sweeps' curves from the store
def test_the_sigma_sweeps_event_figure_is_against_sigma_not_the_step_size_it_pairs_with(uri):
    import matplotlib

    from analysis.curve_figures import event_axes, event_figure

    matplotlib.use("Agg")
    runs, _ = load_runs(uri, ["sigma"])
    assert event_axes(runs) == [("init_scale", [])]  # the step-size factor is set by σ: no figure, no lines of its own
    (ax,) = event_figure(runs, "init_scale", []).get_axes()
    assert ax.get_xlabel() == "init_scale"
    # every seed is marked at its σ (reached or censored), 0.5 and 2 (not at its step-size factor, 2 and 0.125)
    marked = {x for points in ax.collections for x, _ in points.get_offsets()}
    assert marked == {0.5, 2.0}


def test_the_init_scale_figure_draws_each_methods_median_censored_runs_counted_at_their_end():
    import matplotlib

    from analysis.science_figures import init_scale_figure

    matplotlib.use("Agg")
    runs = pd.DataFrame(
        {
            "method": ["baseline"] * 6,
            "loss": ["ce"] * 6,
            "init_scale": [1.0, 1.0, 1.0, 8.0, 8.0, 8.0],
            "status": ["grokked"] * 5 + ["censored"],
            "steps_to_grok": [100.0, 200.0, 300.0, 1000.0, 1200.0, np.nan],
            "steps_to_memorise": [100.0, 150.0, 200.0, 200.0, 400.0, 300.0],
            "steps": [100, 200, 300, 1000, 1200, 5000],
        }
    )
    grok_axis, delay_axis = init_scale_figure(runs).axes
    # α = 8: 1000, 1200 and one censored at 5000: the Kaplan–Meier median is 1200 (survival 1/3 after it)
    assert grok_axis.lines[0].get_ydata().tolist() == [200, 1200]
    # delays: α = 1: 0, 50, 100; α = 8: 800, 800 and 4700 censored: median 800
    assert delay_axis.lines[0].get_ydata().tolist() == [50, 800]
    # a delay of 0 sits on the axis' floor; nothing counts below it; the censored run's △ at 5000 has room above it
    assert [axis.get_ylim() for axis in (grok_axis, delay_axis)] == [(0, 10_000), (0, 10_000)]


def test_the_init_scale_figure_draws_methods_apart_along_alpha_so_equal_values_stay_visible():
    import matplotlib

    from analysis.science_figures import init_scale_figure

    matplotlib.use("Agg")
    same = {"loss": "ce", "init_scale": 4.0, "status": "grokked", "steps_to_grok": 120.0, "steps_to_memorise": 80.0}
    runs = pd.DataFrame([{"method": m, "steps": 120, **same} for m in ("baseline", "grokalign", "grokfast")])
    grok_axis, _ = init_scale_figure(runs).axes
    xs = [line.get_xdata()[0] for line in grok_axis.lines]
    assert xs == pytest.approx([4 * 2**-0.05, 4.0, 4 * 2**0.05])  # evenly about α on the log axis, in legend order
    assert [line.get_ydata()[0] for line in grok_axis.lines] == [120.0] * 3


def test_the_collapse_figure_draws_each_arms_median_of_accuracy_and_zero_loss_share():
    import matplotlib

    from analysis.science_figures import collapse_figure

    matplotlib.use("Agg")
    runs = pd.DataFrame(
        {
            "run_id": ["a", "b", "c"],
            "method": "baseline",
            "lam": 0.0,
            "loss": "ce",
            "variant": ["", "softmax_precision=32", "softmax_precision=32"],
        }
    )
    epochs = [10.0, 100.0, 1000.0]
    zero = {"a": [0.0, 0.0, 0.0], "b": [0.0, 0.5, 1.0], "c": [0.0, 0.7, 0.9]}
    hist = {
        r: pd.DataFrame({"test_acc": [0.1, 0.2, 0.3], "train_zero_loss_fraction": z}, index=epochs)
        for r, z in zero.items()
    }
    figure = collapse_figure(runs, hist)
    accuracy, zero_axis = figure.axes[:2]
    medians = {line.get_label(): line for line in zero_axis.get_lines() if not line.get_label().startswith("_")}
    assert set(medians) == {"Baseline", "Baseline (softmax_precision=32)"}
    collapsed = medians["Baseline (softmax_precision=32)"]
    # the two float32 seeds' median at the grid's first and last epochs: (0 + 0) / 2 and (1.0 + 0.9) / 2
    assert collapsed.get_ydata()[0] == pytest.approx(0.0) and collapsed.get_ydata()[-1] == pytest.approx(0.95)
    assert zero_axis.get_xscale() == "log" and accuracy.get_ylabel() == "test accuracy"
