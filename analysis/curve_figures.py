"""Figures drawn from what a task declares (`Task.presentation`), for a task without accuracy: its train and test
figures against epochs on log axes beside its reference line, for a few values of each task setting a sweep varied, and
its diagnostics against epochs with memorisation and grokking marked; and, for any task, epochs to each event against
each task setting a sweep varied, with the trials that did not reach it marked where they ended."""

from __future__ import annotations

import numbers
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.groups import RunGroup, by_task_settings, event_sample, run_groups
from analysis.names import metric_label, metric_title
from analysis.plotting import (
    EVENTS_NOTE,
    MEDIAN_NOTE,
    coloured,
    grid_over,
    histories,
    legend_beside,
    mark_events,
    median_while_all_run,
    save,
    seed_lines,
    threshold_line,
    x_axis,
)
from analysis.runs import further_events, independent_settings, row_settings, setting_name, setting_text
from analysis.stats import median_or_bound
from grokbench.tasks import TASKS
from grokbench.tasks.base import Presentation

PANELS = 4  # learning-curve panels at most: a few values of the varied settings, spread over their range
EVENT_STYLES = {"memorise": ("s", ":"), "grok": ("o", "-")}  # marker, line; further events: FURTHER_STYLE
FURTHER_STYLE = ("*", "--")


def curve_figures(uri: str, runs: pd.DataFrame, out: Path) -> list[Path]:
    """Each task's learning curves and diagnostics (files named after the task: `polynomial_curves.png`, ...)."""
    written = []
    for task, group in runs.groupby("task"):
        shown = TASKS[task].presentation
        names = tuple(n for n in (shown.train, shown.test, shown.reference, *shown.plotted) if n)
        hist = epoch_histories(uri, group, names)
        varied = row_settings(group)
        written += save(learning_figure(group, hist, shown, varied), out, f"{task}_curves")
        if shown.plotted:
            written += save(diagnostics_figure(group, hist, shown, varied), out, f"{task}_diagnostics")
    return written


def epoch_histories(uri: str, runs: pd.DataFrame, names: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    """Per run: its curves indexed by epoch (its steps ÷ its updates per epoch)."""
    updates_per_epoch = dict(
        zip(runs["run_id"], runs["steps"] / runs["epochs"].where(runs["epochs"] > 0), strict=False)
    )
    return {
        run_id: h.set_axis(h.index / updates_per_epoch[run_id]) for run_id, h in histories(uri, runs, names).items()
    }


def spread(items: list, n: int) -> list:
    """At most n of the items, evenly spread over them, the first and the last among them."""
    if len(items) <= n:
        return items
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)]


def learning_figure(runs: pd.DataFrame, hist: dict[str, pd.DataFrame], shown: Presentation, varied: list[str]):
    """A panel per value of the varied task settings (a few, spread over their range), a line per method, and the
    grokking threshold."""
    import matplotlib.pyplot as plt

    panels = spread(by_task_settings(runs, varied), PANELS)
    fig, axes = plt.subplots(1, len(panels), figsize=(max(4.5 * len(panels), 7), 4), squeeze=False, sharey=True)
    for ax, (values, panel) in zip(axes[0], panels, strict=False):
        for setting, colour in coloured(run_groups(panel)):
            _learning_lines(ax, setting, hist, shown, colour)
        if shown.reference:
            reference_line(ax, panel, hist, shown.reference)
        threshold_line(ax, panel)
        x_axis(ax, "epochs", log=True)
        ax.set(yscale="log" if shown.log else "linear", title=setting_text(varied, values))
    axes[0][0].set_ylabel(shown.label)
    legend_beside(axes[0][-1])
    fig.suptitle(
        MEDIAN_NOTE
        + "; solid: test (thin: each seed), dashed: train"
        + (f", dotted: {shown.reference} (median over the panel's trials)" if shown.reference else ""),
        fontsize=9,
    )
    return fig


def _learning_lines(ax, setting: RunGroup, hist: dict[str, pd.DataFrame], shown: Presentation, colour) -> None:
    ids = list(setting.runs["run_id"])
    tests = [hist[r][shown.test].dropna() for r in ids]
    grid = grid_over(tests, log=True)
    (line,) = ax.plot(grid, median_while_all_run(tests, grid), "-", color=colour, label=f"{setting.label} test")
    seed_lines(ax, tests, grid, line.get_color())
    ax.plot(
        grid,
        median_while_all_run([hist[r][shown.train].dropna() for r in ids], grid),
        "--",
        color=line.get_color(),
        label=f"{setting.label} train",
    )


def reference_line(ax, runs: pd.DataFrame, hist: dict[str, pd.DataFrame], reference: str) -> None:
    """The reference, a constant per trial (set by its data and initial weights, which no method changes): one
    line at its median over the trials."""
    levels = [hist[r][reference].dropna() for r in runs["run_id"]]
    levels = [s.iloc[-1] for s in levels if len(s)]
    if levels:
        ax.axhline(np.median(levels), ls=":", color="0.3", label=reference)


def diagnostics_figure(runs: pd.DataFrame, hist: dict[str, pd.DataFrame], shown: Presentation, varied: list[str]):
    """A panel per diagnostic, a line per method and value of the varied task settings (coloured along them)."""
    import matplotlib
    import matplotlib.pyplot as plt

    groups = sorted(run_groups(runs, by=tuple(varied)), key=lambda g: g.by)
    if varied:
        ramp = matplotlib.colormaps["viridis"]
        values = list(dict.fromkeys(s.by for s in groups))
        lines = [(s, ramp(values.index(s.by) / max(len(values) - 1, 1))) for s in groups]
    else:
        lines = coloured(groups)
    fig, axes = plt.subplots(1, len(shown.plotted), figsize=(5 * len(shown.plotted), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], shown.plotted, strict=False):
        spans = []
        for setting, colour in lines:
            label = ", ".join(t for t in (setting.label, setting_text(varied, setting.by)) if t)
            spans.append(_diagnostic_line(ax, setting, hist, metric, colour, label))
        x_axis(ax, "epochs", log=True)
        ax.set(title=metric_title(metric), ylabel=metric_label(metric))
        low, high = min(s[0] for s in spans), max(s[1] for s in spans)
        if 0 < low and high > 100 * low:  # a curve over decades (the NTK's distance grows from ~0)
            ax.set_yscale("log")
    legend_beside(axes[0][-1])
    fig.suptitle(f"{MEDIAN_NOTE}; {EVENTS_NOTE}", fontsize=9)
    return fig


def _diagnostic_line(
    ax, setting: RunGroup, hist: dict[str, pd.DataFrame], metric: str, colour, label: str
) -> tuple[float, float]:
    """The line, each seed's own and its events marked on it; returns the range of the seeds' positive values
    ((inf, 0) where none)."""
    series = {r: hist[r][metric].dropna() for r in setting.runs["run_id"]}
    grid = grid_over(list(series.values()), log=True)
    (line,) = ax.plot(grid, median_while_all_run(list(series.values()), grid), "-", color=colour, label=label)
    seed_lines(ax, list(series.values()), grid, line.get_color())
    mark_events(ax, setting.runs, series, (("epochs_to_memorise", "s"), ("epochs_to_grok", "*")), line.get_color())
    values = np.concatenate([s.to_numpy(float) for s in series.values()] or [np.empty(0)])
    positive = values[np.isfinite(values) & (values > 0)]
    return (positive.min(), positive.max()) if len(positive) else (np.inf, 0.0)


def event_figures(runs: pd.DataFrame, out: Path) -> list[Path]:
    """Epochs to each event against each setting `event_axes` names (`epochs_to_grok_vs_alpha`)."""
    return [
        path
        for column, others in event_axes(runs)
        for path in save(event_figure(runs, column, others), out, f"epochs_to_grok_vs_{setting_name(column)}")
    ]


def event_axes(runs: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """Each numeric setting the sweep varied, the init scale among them, but not one that another sets (σ's paired
    step-size factor), with the settings its figure's lines split on: the others varied (and the task, where the
    runs are of several)."""
    settings = row_settings(runs)
    numeric = [c for c in settings if all(isinstance(v, numbers.Real) for v in runs[c].dropna())]
    tasks = ["task"] if runs["task"].nunique() > 1 else []
    return [
        (column, independent_settings(runs, [column, *(c for c in settings if c != column)])[1:] + tasks)
        for column in independent_settings(runs, numeric)
    ]


def event_figure(runs: pd.DataFrame, column: str, others: list[str]):
    """Epochs to each event against `column`, a line per method and value of the `others`."""
    import matplotlib.pyplot as plt

    events = ["memorise", "grok", *further_events(runs)]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for setting, colour in coloured(run_groups(runs, by=tuple(others)), one_axes=True):
        label = ", ".join(t for t in (setting.label, setting_text(others, setting.by)) if t)
        for event in events:
            _event_line(ax, setting.runs, column, event, colour, f"{label}: {event}")
    values = runs[column].dropna()
    if values.min() > 0 and values.max() >= 10 * values.min():
        ax.set_xscale("log", base=2)
    ax.set(yscale="log", xlabel=setting_name(column), ylabel="epochs")
    ax.set_title(
        "median over seeds (Kaplan–Meier where censored); small marks: each seed; "
        "△ censored: not reached by the epoch its run ended",
        fontsize=8,
    )
    ax.legend(fontsize=7)
    return fig


def _event_line(ax, runs: pd.DataFrame, column: str, event: str, colour, label: str) -> None:
    """Each seed (reached: a small mark, not reached: △ where its run ended) and the median over seeds, drawn
    where it is known (not where the Kaplan–Meier curve never falls to 1/2)."""
    marker, style = EVENT_STYLES.get(event, FURTHER_STYLE)
    xs, medians = [], []
    for value, sub in runs.groupby(column, sort=True):
        sample = event_sample(sub, event)
        reached = [v for v, seen in zip(sample.values, sample.observed, strict=False) if seen]
        censored = [v for v, seen in zip(sample.values, sample.observed, strict=False) if not seen]
        ax.scatter([value] * len(reached), reached, marker=marker, s=14, color=colour, alpha=0.4)
        ax.scatter([value] * len(censored), censored, marker="^", s=40, facecolors="none", edgecolors=colour)
        median, is_bound = median_or_bound(sample.values, sample.observed)
        if median is not None and not is_bound:
            xs.append(value)
            medians.append(median)
    ax.plot(xs, medians, style, marker=marker, color=colour, label=label)
