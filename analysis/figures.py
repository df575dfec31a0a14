"""Figures (PNG and PDF) from a sweep's runs: learning curves against steps and seconds, time to grok against
λ and against the initialisation scale, and the task's curves (MNIST: geometry; modarith: Gini coefficients) with
the memorised and grokked moments marked. What a task shows, and on which axis, its `Presentation` says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from analysis.curve_figures import curve_figures, event_figures
from analysis.groups import METHOD_NAMES, RunGroup, method_rank, run_groups, varied_groups, with_conditions
from analysis.names import SETTINGS, lambda_label, metric_label, metric_title
from analysis.plotting import (
    EVENTS_NOTE,
    LOSS_STYLES,
    MEDIAN_NOTE,
    coloured,
    grid_over,
    histories,
    legend_beside,
    loss_style,
    mark_events,
    median_while_all_run,
    save,
    seed_lines,
    threshold_line,
    x_axis,
)
from analysis.runs import presentation, value_text
from analysis.science_figures import science_figures
from grokbench.tasks import TASKS
from grokbench.tasks.base import Presentation

X_AXES = {"step": ("optimiser steps", "accuracy_vs_steps"), "train_time_s": ("training seconds", "accuracy_vs_seconds")}


def accuracy_figure(runs: pd.DataFrame, hist: dict[str, pd.DataFrame], against: str, shown: Presentation):
    """Train (dashed) and test (solid) accuracy against steps or seconds, median over seeds, beside each seed's
    test accuracy; a panel per loss and condition, a row of them per init scale where the runs vary it."""
    import matplotlib.pyplot as plt

    runs = with_conditions(runs)
    panels = sorted(set(zip(runs["loss"], runs["condition"], strict=False)))
    facets = init_scale_facets(runs)
    fig, axes = plt.subplots(
        len(facets), len(panels), figsize=(6 * len(panels), 4 * len(facets)), squeeze=False, layout=_layout(facets)
    )
    for column, (loss, condition) in enumerate(panels):
        panel = runs[(runs["loss"] == loss) & (runs["condition"] == condition)]
        lines = coloured(run_groups(panel))  # labels and colours from every scale's runs: alike in every row
        for ax, (scale, facet) in zip(axes[:, column], facets, strict=True):
            shown_lines = in_facet(lines, facet)
            if not shown_lines:  # this loss or condition was not run at this init scale
                ax.axis("off")
                continue
            _accuracy_panel(ax, shown_lines, hist, against, shown)
            threshold_line(ax, panel)
            ax.legend(fontsize=7)
            ax.set(title=_joined(f"loss {loss}", condition, scale), ylabel="accuracy", ylim=(0, 1.02))
    fig.suptitle(MEDIAN_NOTE + "; thin: each seed's test accuracy", fontsize=9)
    return fig


def _accuracy_panel(ax, lines: list, hist: dict[str, pd.DataFrame], against: str, shown: Presentation) -> None:
    for setting, colour in lines:
        curves = {
            metric: [_against(hist[run_id], metric, against) for run_id in setting.runs["run_id"]]
            for metric in ("train_acc", "test_acc")
        }
        grid = grid_over(curves["test_acc"], shown.log_steps)
        (line,) = ax.plot(
            grid, median_while_all_run(curves["test_acc"], grid), "-", color=colour, label=f"{setting.label} test"
        )
        seed_lines(ax, curves["test_acc"], grid, line.get_color())
        ax.plot(
            grid,
            median_while_all_run(curves["train_acc"], grid),
            "--",
            color=line.get_color(),
            label=f"{setting.label} train",
        )
    x_axis(ax, X_AXES[against][0], shown.log_steps)


def init_scale_facets(runs: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The runs per init scale where they vary it, each named for a panel's title ("init scale 8"); else one facet
    of all, unnamed. Curves at different scales end orders of magnitude apart: drawn together, the median of a
    method's curves would stop where its fastest scale's runs do."""
    if "init_scale" not in runs or runs["init_scale"].nunique(dropna=False) < 2:
        return [("", runs)]
    facets = runs.groupby("init_scale", sort=True, dropna=False)
    return [(f"init scale {value_text(scale)}", part) for scale, part in facets]


def in_facet(lines: list[tuple[RunGroup, Any]], facet: pd.DataFrame) -> list[tuple[RunGroup, Any]]:
    """The figure's lines (groups with their colours), each with only the facet's runs; those left with none go."""
    kept = []
    for group, colour in lines:
        runs = group.runs[group.runs.index.isin(facet.index)]
        if len(runs):
            kept.append((group._replace(runs=runs), colour))
    return kept


def _layout(facets: list[tuple[str, pd.DataFrame]]) -> str | None:
    """Rows of panels need room between them for their titles; one row keeps the plain layout."""
    return "constrained" if len(facets) > 1 else None


def _against(history: pd.DataFrame, metric: str, against: str) -> pd.Series:
    """A run's curve indexed by optimiser step, or by training seconds."""
    h = history.dropna(subset=[metric])
    x = h.index.to_numpy(float) if against == "step" else h["train_time_s"].to_numpy(float)
    return pd.Series(h[metric].to_numpy(float), index=x)


def sensitivity_figure(runs: pd.DataFrame, by: str):
    """Median seconds to grok against λ or the initialisation scale, a line per method, loss and condition; a
    panel per method for λ, whose meaning is the method's own. None where no method ran at several values."""
    import matplotlib.pyplot as plt

    varied = varied_groups(runs, by)
    if not varied:
        return None
    methods = sorted({method for (method, _, _), _ in varied}, key=method_rank) if by == "lam" else [None]
    fig, axes = plt.subplots(1, len(methods), figsize=(6 * len(methods), 4), squeeze=False)
    for ax, shown_method in zip(axes[0], methods, strict=True):
        for (method, loss, condition), group in varied:
            if shown_method in (None, method):
                _sensitivity_line(ax, group, by, f"{METHOD_NAMES.get(method, method)} ({_joined(loss, condition)})")
        xlabel = lambda_label(shown_method) if by == "lam" else SETTINGS.get(by, by)
        ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel="seconds to grok (▲ censored at budget)")
        ax.legend(fontsize=7)
    return fig


def _sensitivity_line(ax, group: pd.DataFrame, by: str, label: str) -> None:
    grokked = group[group["status"] == "grokked"]
    censored = group[group["status"] == "censored"]
    (line,) = ax.plot(grokked.groupby(by)["time_to_grok_s"].median(), "o-", label=label)
    ax.scatter(censored[by], censored["train_time_s"], marker="^", color=line.get_color(), alpha=0.6)


def _joined(*parts: str) -> str:
    return ", ".join(filter(None, parts))


def curves_figure(runs: pd.DataFrame, hist: dict[str, pd.DataFrame], shown: Presentation):
    """The task's plotted curves against steps, median over seeds beside each seed's own, a line per method, λ and
    variant (and loss), with each seed's memorised (■) and grokked (★) steps marked on its curve; a row of panels
    per init scale where the runs vary it."""
    import matplotlib.pyplot as plt

    facets = init_scale_facets(runs)
    columns = len(shown.plotted)
    fig, axes = plt.subplots(
        len(facets), columns, figsize=(6 * columns, 4 * len(facets)), squeeze=False, layout=_layout(facets)
    )
    losses = set(runs["loss"])
    by_loss = sorted(run_groups(runs, by=("loss",)), key=lambda g: (method_rank(g.method), g.by))  # ce beside mse
    lines = coloured(by_loss)  # labels and colours from every scale's runs: alike in every row
    for row, (scale, facet) in zip(axes, facets, strict=True):
        for ax, metric in zip(row, shown.plotted, strict=True):
            _curves_panel(ax, in_facet(lines, facet), hist, metric, shown, several_losses=len(losses) > 1)
            ax.set(title=_joined(metric_title(metric), scale), ylabel=metric_label(metric))
            x_axis(ax, "optimiser steps", shown.log_steps)
        legend_beside(row[-1])  # every panel of a row has the same lines
    styles = (
        f" ({', '.join(LOSS_STYLES[loss][1] for loss in LOSS_STYLES if loss in losses)})" if len(losses) > 1 else ""
    )
    fig.suptitle(f"{MEDIAN_NOTE}; {EVENTS_NOTE}{styles}", fontsize=9)
    return fig


def _curves_panel(
    ax, lines: list, hist: dict[str, pd.DataFrame], metric: str, shown: Presentation, several_losses: bool
) -> None:
    for setting, colour in lines:
        (loss,), group = setting.by, setting.runs
        series = {r: hist[r][metric].dropna() for r in group["run_id"]}
        grid = grid_over(list(series.values()), shown.log_steps)
        label = setting.label + (f" ({loss})" if several_losses else "")
        (line,) = ax.plot(
            grid, median_while_all_run(list(series.values()), grid), loss_style(loss), color=colour, label=label
        )
        seed_lines(ax, list(series.values()), grid, line.get_color())
        mark_events(ax, group, series, (("steps_to_memorise", "s"), ("steps_to_grok", "*")), line.get_color())


def has_accuracy(task: str | None) -> bool:
    """Whether a task offers accuracy (a run of no known task: a classification task's runs)."""
    return task not in TASKS or "accuracy" in TASKS[task].capabilities


def accuracy_figures(uri: str, runs: pd.DataFrame, out: Path) -> list[Path]:
    """Accuracy against steps and seconds, and the task's plotted curves (`Presentation`), of a task with accuracy."""
    if runs.empty:
        return []
    shown = presentation(runs)
    hist = histories(uri, runs, shown.plotted)
    figures = {name: accuracy_figure(runs, hist, against, shown) for against, (_, name) in X_AXES.items()}
    figures[shown.name] = curves_figure(runs, hist, shown)
    return [path for name, fig in figures.items() for path in save(fig, out, name)]


def write_figures(uri: str, runs: pd.DataFrame, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    out.mkdir(parents=True, exist_ok=True)
    finished = runs[runs["status"].isin(["grokked", "censored"])]
    # the accuracy figures for tasks that have accuracy; the others' from the curves they declare
    with_accuracy = finished["task"].map(has_accuracy).astype(bool)
    written = accuracy_figures(uri, finished[with_accuracy], out) + curve_figures(uri, finished[~with_accuracy], out)
    for by in ("lam", "init_scale"):
        fig = sensitivity_figure(finished, by)
        written += save(fig, out, f"time_to_grok_vs_{by}") if fig is not None else []
    return written + event_figures(finished, out) + science_figures(uri, finished, out)
