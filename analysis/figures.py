"""Figures (PNG and PDF) from a sweep's runs: learning curves against steps and seconds, time to grok against
λ and against the initialisation scale, and geometry curves with the memorised and grokked moments marked."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.tables import METHOD_NAMES, Setting, method_rank, settings, varied_groups
from grokbench.sweep.mlflow_store import TrackingStore
from grokbench.tasks import TASKS

CURVES = ("train_acc", "test_acc", "train_time_s", "centroid_alignment", "jacobian_norm")
COLOURS = {method: f"C{i}" for i, method in enumerate(METHOD_NAMES)}  # one colour a method in every panel
LOSS_STYLES = {"ce": "-", "mse": "--"}


def histories(uri: str, runs: pd.DataFrame, names: tuple[str, ...] = CURVES) -> dict[str, pd.DataFrame]:
    """Per run: a frame indexed by optimiser step with one column per curve."""
    store = TrackingStore(uri)
    out = {}
    for run_id in runs["run_id"]:
        columns = {name: pd.Series(store.curve(run_id, name), dtype=float) for name in names}
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


def accuracy_figures(runs: pd.DataFrame, hist: dict[str, pd.DataFrame], out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    written = []
    for x_axis, label in (("step", "optimiser steps"), ("train_time_s", "training seconds")):
        losses = sorted(set(runs["loss"]))
        fig, axes = plt.subplots(1, len(losses), figsize=(6 * len(losses), 4), squeeze=False)
        for ax, loss in zip(axes[0], losses):
            for setting, colour in coloured(settings(runs[runs["loss"] == loss])):
                name, group = setting.label, setting.runs
                curves = {}
                for metric in ("train_acc", "test_acc"):
                    series = []
                    for run_id in group["run_id"]:
                        h = hist[run_id].dropna(subset=[metric])
                        x = h.index.to_numpy(float) if x_axis == "step" else h["train_time_s"].to_numpy(float)
                        series.append(pd.Series(h[metric].to_numpy(float), index=x))
                    curves[metric] = series
                end = max((s.index.max() for s in curves["test_acc"] if len(s)), default=0)
                grid = np.linspace(0, end, 400)
                med, lo, hi = _median_band(curves["test_acc"], grid)
                line, = ax.plot(grid, med, "-", color=colour, label=f"{name} test (band: min–max over seeds)")
                ax.fill_between(grid, lo, hi, color=line.get_color(), alpha=0.15)
                med, _, _ = _median_band(curves["train_acc"], grid)
                ax.plot(grid, med, ":", color=line.get_color(), label=f"{name} train")
            ax.set(title=f"loss {loss}", xlabel=label, ylabel="accuracy", ylim=(0, 1.02))
            ax.legend(fontsize=7)
        written += _save(fig, out, f"accuracy_vs_{'steps' if x_axis == 'step' else 'seconds'}")
        plt.close(fig)
    return written


def sensitivity_figure(runs: pd.DataFrame, by: str, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    varied = varied_groups(runs, by)
    if not varied:
        return []
    fig, ax = plt.subplots(figsize=(6, 4))
    for (method, loss), group in varied:
        grokked = group[group["status"] == "grokked"]
        censored = group[group["status"] == "censored"]
        line, = ax.plot(grokked.groupby(by)["time_to_grok_s"].median(), "o-",
                        label=f"{METHOD_NAMES.get(method, method)} ({loss})")
        ax.scatter(censored[by], censored["train_time_s"], marker="^", color=line.get_color(), alpha=0.6)
    ax.set(xscale="log", yscale="log", xlabel=by, ylabel="seconds to grok (▲ censored at budget)")
    ax.legend(fontsize=7)
    paths = _save(fig, out, f"time_to_grok_vs_{by}")
    plt.close(fig)
    return paths


def geometry_figure(runs: pd.DataFrame, hist: dict[str, pd.DataFrame], out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, metric in zip(axes, ("centroid_alignment", "jacobian_norm")):
        by_loss = sorted(settings(runs, by=("loss",)), key=lambda s: (method_rank(s.method), s.by))  # ce beside mse
        for setting, colour in coloured(by_loss):
            (loss,), group = setting.by, setting.runs
            series = [hist[r][metric].dropna() for r in group["run_id"]]
            end = max((s.index.max() for s in series if len(s)), default=0)
            grid = np.linspace(0, end, 400)
            med, _, _ = _median_band(series, grid)
            line, = ax.plot(grid, med, LOSS_STYLES.get(loss, "-"), color=colour, label=f"{setting.label} ({loss})")
            for event, marker in (("steps_to_memorise", "s"), ("steps_to_grok", "*")):
                moments = group[event].dropna()  # censored runs never grokked: no moment to mark
                if len(moments):
                    step = moments.median()
                    ax.plot([step], [np.interp(step, grid, med)], marker, color=line.get_color(), markersize=9)
        ax.set(title=metric, xlabel="optimiser steps")
        ax.legend(fontsize=7)
    fig.suptitle("median over seeds; ■ memorised, ★ grokked (solid: cross-entropy, dashed: MSE)", fontsize=10)
    paths = _save(fig, out, "geometry")
    plt.close(fig)
    return paths


def has_accuracy(task: str | None) -> bool:
    """Whether a task offers accuracy (a run of no known task: a classification task's runs)."""
    return task not in TASKS or "accuracy" in TASKS[task].capabilities


def write_figures(uri: str, runs: pd.DataFrame, out: Path) -> list[Path]:
    import matplotlib

    from analysis.curve_figures import curve_figures, event_figures  # it draws with this module's helpers

    matplotlib.use("Agg")
    out.mkdir(parents=True, exist_ok=True)
    finished = runs[runs["status"].isin(["grokked", "censored"])]
    # the accuracy figures for tasks that have accuracy; the others' from the curves they declare
    with_accuracy = finished["task"].map(has_accuracy).astype(bool)
    accuracy, declared = finished[with_accuracy], finished[~with_accuracy]
    written = []
    if not accuracy.empty:
        hist = histories(uri, accuracy)
        written += accuracy_figures(accuracy, hist, out) + geometry_figure(accuracy, hist, out)
    written += curve_figures(uri, declared, out)
    for by in ("lam", "init_scale"):
        written += sensitivity_figure(finished, by, out)
    return written + event_figures(finished, out)
