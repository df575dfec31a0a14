"""Figures (PNG and PDF) from a sweep's runs: learning curves against steps and seconds, time to grok against
λ and against the initialisation scale, and the task's curves (MNIST: geometry; modarith: Gini coefficients) with
the memorised and grokked moments marked. What a task shows, and on which axis, its `Presentation` says."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.runs import presentation
from analysis.tables import METHOD_NAMES, Setting, method_rank, settings, varied_groups, with_conditions
from grokbench.sweep.mlflow_store import TrackingStore
from grokbench.tasks import TASKS
from grokbench.tasks.base import Presentation

CURVES = ("train_acc", "test_acc", "train_time_s")  # and the task's `Presentation.plotted`
COLOURS = {method: f"C{i}" for i, method in enumerate(METHOD_NAMES)}  # one colour a method in every panel
LOSS_STYLES = {"ce": "-", "mse": "--"}


def histories(uri: str, runs: pd.DataFrame, curves: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    """Per run: a frame indexed by optimiser step with one column per curve."""
    store = TrackingStore(uri)
    out = {}
    for run_id in runs["run_id"]:
        columns = {name: pd.Series(store.curve(run_id, name), dtype=float) for name in (*CURVES, *curves)}
        out[run_id] = pd.DataFrame(columns).sort_index()
    return out


def _median_band(curves: list[pd.Series], grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median and min–max band over runs, each interpolated onto the grid (NaN past a run's end)."""
    rows = [np.interp(grid, c.index.to_numpy(float), c.to_numpy(float), right=np.nan) for c in curves if len(c)]
    if not rows:
        return (np.full_like(grid, np.nan),) * 3
    stacked = np.vstack(rows)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # past every run's end a column is all NaN: so be it
        return np.nanmedian(stacked, 0), np.nanmin(stacked, 0), np.nanmax(stacked, 0)


def x_grid(end: float, first: float, log: bool) -> np.ndarray:
    """Where the median curves are drawn: evenly from 0, or on a log axis evenly in log from the first positive x."""
    if log and 0 < first < end:
        return np.geomspace(first, end, 400)
    return np.linspace(0, end, 400)


def _axis(ax, log: bool) -> None:
    from matplotlib.ticker import NullFormatter

    if log:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # within a decade, minor labels overprint each other


def _save(fig, out: Path, name: str) -> list[Path]:
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    for path in paths:
        fig.savefig(path, dpi=130, bbox_inches="tight")
    return paths


def coloured(groups: list[Setting]) -> list[tuple[Setting, Any]]:
    """Each group with its line colour: a method run as its authors ran it, at one λ, keeps its own; a line per λ
    or per variant (its own settings off their defaults) gets a colour of its own from a palette no method uses,
    the same for the same label in every panel."""
    import matplotlib

    spare_palette = matplotlib.colormaps["tab20b"]
    spare: dict[str, int] = {}
    out = []
    for setting in groups:
        if setting.label != METHOD_NAMES.get(setting.method, setting.method):
            i = spare.setdefault(setting.label, len(spare))
            # tab20b comes in hue groups of four shades: step across the groups first, so neighbours differ in hue
            out.append((setting, spare_palette((4 * i + i // 5) % 20)))
        else:
            out.append((setting, COLOURS.get(setting.method)))
    return out


X_AXES = {"step": ("optimiser steps", "accuracy_vs_steps"), "train_time_s": ("training seconds", "accuracy_vs_seconds")}


def accuracy_figure(runs: pd.DataFrame, hist: dict[str, pd.DataFrame], x_axis: str, shown: Presentation):
    """Train (dashed) and test (solid) accuracy against steps or seconds, median over seeds with the min–max band
    of test accuracy; a panel per loss and condition."""
    import matplotlib.pyplot as plt

    runs = with_conditions(runs)
    panels = sorted(set(zip(runs["loss"], runs["condition"])))
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (loss, condition) in zip(axes[0], panels):
        panel = runs[(runs["loss"] == loss) & (runs["condition"] == condition)]
        for setting, colour in coloured(settings(panel)):
            curves = {metric: [_against(hist[run_id], metric, x_axis) for run_id in setting.runs["run_id"]]
                      for metric in ("train_acc", "test_acc")}
            grid = x_grid(*_extent(curves["test_acc"]), shown.log_steps)
            med, lo, hi = _median_band(curves["test_acc"], grid)
            line, = ax.plot(grid, med, "-", color=colour, label=f"{setting.label} test (band: min–max over seeds)")
            ax.fill_between(grid, lo, hi, color=line.get_color(), alpha=0.15)
            med, _, _ = _median_band(curves["train_acc"], grid)
            ax.plot(grid, med, "--", color=line.get_color(), label=f"{setting.label} train")
        ax.set(title=f"loss {loss}" + (f", {condition}" if condition else ""), xlabel=X_AXES[x_axis][0],
               ylabel="accuracy", ylim=(0, 1.02))
        _axis(ax, shown.log_steps)
        ax.legend(fontsize=7)
    return fig


def _against(history: pd.DataFrame, metric: str, x_axis: str) -> pd.Series:
    """A run's curve indexed by optimiser step, or by training seconds."""
    h = history.dropna(subset=[metric])
    x = h.index.to_numpy(float) if x_axis == "step" else h["train_time_s"].to_numpy(float)
    return pd.Series(h[metric].to_numpy(float), index=x)


def _extent(curves: list[pd.Series]) -> tuple[float, float]:
    """(last x, first positive x) over the runs' curves."""
    xs = [c.index.to_numpy(float) for c in curves if len(c)]
    end = max((x.max() for x in xs), default=0.0)
    first = min((x[x > 0].min() for x in xs if (x > 0).any()), default=0.0)
    return end, first


def sensitivity_figure(runs: pd.DataFrame, by: str, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    varied = varied_groups(runs, by)
    if not varied:
        return []
    fig, ax = plt.subplots(figsize=(6, 4))
    for (method, loss, condition), group in varied:
        grokked = group[group["status"] == "grokked"]
        censored = group[group["status"] == "censored"]
        line, = ax.plot(grokked.groupby(by)["time_to_grok_s"].median(), "o-",
                        label=f"{METHOD_NAMES.get(method, method)} ({', '.join(filter(None, (loss, condition)))})")
        ax.scatter(censored[by], censored["train_time_s"], marker="^", color=line.get_color(), alpha=0.6)
    ax.set(xscale="log", yscale="log", xlabel=by, ylabel="seconds to grok (▲ censored at budget)")
    ax.legend(fontsize=7)
    paths = _save(fig, out, f"time_to_grok_vs_{by}")
    plt.close(fig)
    return paths


def curves_figure(runs: pd.DataFrame, hist: dict[str, pd.DataFrame], shown: Presentation):
    """The task's plotted curves against steps, median over seeds, a line per method, λ and variant (and loss),
    with the median memorised (■) and grokked (★) steps marked."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(shown.plotted), figsize=(6 * len(shown.plotted), 4), squeeze=False)
    for ax, metric in zip(axes[0], shown.plotted):
        by_loss = sorted(settings(runs, by=("loss",)), key=lambda s: (method_rank(s.method), s.by))  # ce beside mse
        for setting, colour in coloured(by_loss):
            (loss,), group = setting.by, setting.runs
            series = [hist[r][metric].dropna() for r in group["run_id"]]
            grid = x_grid(*_extent(series), shown.log_steps)
            med, _, _ = _median_band(series, grid)
            line, = ax.plot(grid, med, LOSS_STYLES.get(loss, "-"), color=colour, label=f"{setting.label} ({loss})")
            for event, marker in (("steps_to_memorise", "s"), ("steps_to_grok", "*")):
                moments = group[event].dropna()  # censored runs never grokked: no moment to mark
                if len(moments):
                    step = moments.median()
                    ax.plot([step], [np.interp(step, grid, med)], marker, color=line.get_color(), markersize=9)
        ax.set(title=metric, xlabel="optimiser steps")
        _axis(ax, shown.log_steps)
        ax.legend(fontsize=7)
    fig.suptitle("median over seeds; ■ memorised, ★ grokked (solid: cross-entropy, dashed: MSE)", fontsize=10)
    return fig


def has_accuracy(task: str | None) -> bool:
    """Whether a task offers accuracy (a run of no known task: a classification task's runs)."""
    return task not in TASKS or "accuracy" in TASKS[task].capabilities


def accuracy_figures(uri: str, runs: pd.DataFrame, out: Path) -> list[Path]:
    """Accuracy against steps and seconds, and the task's plotted curves (`Presentation`), of a task with accuracy."""
    import matplotlib.pyplot as plt

    if runs.empty:
        return []
    shown = presentation(runs)
    hist = histories(uri, runs, shown.plotted)
    figures = {name: accuracy_figure(runs, hist, x_axis, shown) for x_axis, (_, name) in X_AXES.items()}
    figures[shown.name] = curves_figure(runs, hist, shown)
    written = []
    for name, fig in figures.items():
        written += _save(fig, out, name)
        plt.close(fig)
    return written


def write_figures(uri: str, runs: pd.DataFrame, out: Path) -> list[Path]:
    import matplotlib

    from analysis.curve_figures import curve_figures, event_figures  # it draws with this module's helpers

    matplotlib.use("Agg")

    out.mkdir(parents=True, exist_ok=True)
    finished = runs[runs["status"].isin(["grokked", "censored"])]
    # the accuracy figures for tasks that have accuracy; the others' from the curves they declare
    with_accuracy = finished["task"].map(has_accuracy).astype(bool)
    written = accuracy_figures(uri, finished[with_accuracy], out) + curve_figures(uri, finished[~with_accuracy], out)
    for by in ("lam", "init_scale"):
        written += sensitivity_figure(finished, by, out)
    return written + event_figures(finished, out)
