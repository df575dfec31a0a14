"""The figures as a paper would use them, checked on matplotlib's own objects: readable panel titles and y labels,
a legend that covers no panel, the task's grokking threshold drawn, and a panel of its own for each method's λ."""

import shutil

import matplotlib
import numpy as np
import pandas as pd
import pytest
from stores import log_trial

from analysis.figures import accuracy_figure, curves_figure, sensitivity_figure
from analysis.plotting import grok_threshold, histories
from analysis.runs import load_runs, presentation
from grokbench.sweep.mlflow_store import TrackingStore

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def mnist_runs(tmp_path_factory, migrated_store):
    """Baseline and GrokAlign at two λ, two seeds each, with their curves, read as the figures read them."""
    path = tmp_path_factory.mktemp("figures") / "mlflow.db"
    shutil.copy(migrated_store, path)
    store = TrackingStore(f"sqlite:///{path}")
    experiment_id = store.prepare_experiment("grokbench/mnist")
    for seed, steps in enumerate((400, 600)):
        log_trial(store.client, experiment_id, "baseline", "ce", seed, "grokked", steps, steps / 10)
        for lam in (1e-3, 1e-2):
            log_trial(store.client, experiment_id, "grokalign", "ce", seed, "grokked", steps // 2, steps / 20, lam=lam)
        log_trial(store.client, experiment_id, "grokfast", "ce", seed, "grokked", steps, steps / 10, lam=seed + 1.0)
    runs, _ = load_runs(store.uri, ["mnist"])
    return store.uri, runs


def threshold_lines(ax) -> list:
    return [line for line in ax.get_lines() if line.get_label().startswith("grokking threshold")]


def test_the_geometry_figure_names_its_panels_and_axes_and_its_legend_covers_no_panel(mnist_runs):
    uri, runs = mnist_runs
    shown = presentation(runs)
    fig = curves_figure(runs, histories(uri, runs, shown.plotted), shown)
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["Centroid alignment", "Jacobian norm"]  # not centroid_alignment
    assert [ax.get_ylabel() for ax in axes] == ["cosine(centroid, input)", "norm of the input Jacobian"]
    fig.canvas.draw()
    legends = [ax.get_legend() for ax in axes if ax.get_legend() is not None]
    assert len(legends) == 1  # the same lines in every panel: one legend
    box = legends[0].get_window_extent()
    assert not any(box.overlaps(ax.get_window_extent()) for ax in axes)


def test_the_accuracy_figures_draw_the_tasks_grokking_threshold_dashed(mnist_runs):
    uri, runs = mnist_runs
    shown = presentation(runs)
    hist = histories(uri, runs, shown.plotted)
    for against in ("step", "train_time_s"):
        fig = accuracy_figure(runs, hist, against, shown)
        (line,) = threshold_lines(fig.get_axes()[0])
        assert list(line.get_ydata()) == [0.85, 0.85]  # MNIST: grokked at test accuracy above 0.85
        assert line.get_linestyle() == "--"
        assert "grokking threshold (0.85)" in [t.get_text() for t in fig.get_axes()[0].get_legend().get_texts()]


def test_the_threshold_is_the_runs_own_setting_where_the_task_has_one_and_none_where_they_disagree():
    polynomial = pd.DataFrame({"task": ["polynomial"] * 2, "task.grok_threshold": [0.1, 0.1]})
    assert grok_threshold(polynomial) == 0.1
    assert grok_threshold(polynomial.assign(**{"task.grok_threshold": [0.1, 0.05]})) is None
    assert grok_threshold(pd.DataFrame({"task": ["mnist", "modarith"]})) is None  # 0.85 and 0.95
    assert grok_threshold(pd.DataFrame({"task": ["modarith"]})) == 0.95


def test_each_methods_lambda_gets_a_panel_and_an_axis_of_its_own(mnist_runs):
    _, runs = mnist_runs
    fig = sensitivity_figure(runs, "lam")
    axes = fig.get_axes()
    assert [ax.get_xlabel() for ax in axes] == [
        "GrokAlign λ (weight of the Jacobian penalty)",
        "Grokfast λ (gain on the slow gradient)",
    ]
    for ax, method in zip(axes, ("GrokAlign", "Grokfast"), strict=True):
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels and all(label.startswith(method) for label in labels)
    grokalign = axes[0].get_lines()[0]
    # the median over seeds 0 and 1 of seconds to grok at each λ: 400 / 20 and 600 / 20 s → 25 s
    assert list(grokalign.get_xdata()) == [1e-3, 1e-2] and np.allclose(grokalign.get_ydata(), [25.0, 25.0])
    assert sensitivity_figure(runs[runs["method"] != "grokalign"], "init_scale") is None  # one α: no figure


def test_a_sweep_over_the_init_scale_draws_a_row_of_panels_per_scale(fresh_mnist):
    uri, client, experiment_id = fresh_mnist
    for init, steps in ((1.0, 200), (8.0, 4000)):
        for seed in range(2):
            log_trial(client, experiment_id, "baseline", "ce", seed, "grokked", steps + 40 * seed, 1.0, init_scale=init)
            log_trial(client, experiment_id, "grokalign", "ce", seed, "grokked", steps, 1.0, lam=1e-2, init_scale=init)
    # at init 1 only: GrokAlign at a second λ, and the MSE baseline
    log_trial(client, experiment_id, "grokalign", "ce", 0, "grokked", 100, 1.0, lam=1e-3, init_scale=1.0)
    log_trial(client, experiment_id, "baseline", "mse", 0, "grokked", 300, 1.0, init_scale=1.0)
    runs, _ = load_runs(uri, ["mnist"])
    shown = presentation(runs)
    hist = histories(uri, runs, shown.plotted)
    accuracy = accuracy_figure(runs, hist, "step", shown).get_axes()
    assert [ax.get_title() for ax in accuracy] == [
        "loss ce, init scale 1",
        "loss mse, init scale 1",
        "loss ce, init scale 8",
        "",
    ]
    assert not accuracy[3].axison  # no MSE run at init 8: a blank panel
    # each scale's median is drawn while both its seeds run: to step 200 at init 1, to 4000 at init 8, on the
    # figure's grid (pooled, both would stop at 200)
    medians = [line for ax in accuracy[::2] for line in ax.get_lines() if line.get_label() == "Baseline test"]
    ends = [np.nanmax(np.where(np.isnan(m.get_ydata()), np.nan, m.get_xdata())) for m in medians]
    assert ends == pytest.approx([200, 4000], rel=0.01)
    geometry = curves_figure(runs, hist, shown).get_axes()
    assert [ax.get_title() for ax in geometry] == [
        "Centroid alignment, init scale 1",
        "Jacobian norm, init scale 1",
        "Centroid alignment, init scale 8",
        "Jacobian norm, init scale 8",
    ]
    # a line keeps its label and colour in every row, though GrokAlign ran at one λ and one loss at init 8
    for figure_axes, name in ((accuracy[::2], "GrokAlign (λ=0.01) test"), (geometry[::2], "GrokAlign (λ=0.01) (ce)")):
        colours = [line.get_color() for ax in figure_axes for line in ax.get_lines() if line.get_label() == name]
        assert len(colours) == 2 and colours[0] == colours[1], name
