"""What every figure draws with: a run's curves read from MLflow, the median over seeds on a grid beside each
seed's own curve, each seed's events on its curve, the task's grokking threshold, a colour per line, a log step axis,
a legend clear of the curves, and a figure saved as PNG and PDF."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.groups import METHOD_NAMES, RunGroup
from analysis.runs import TASK_SETTING
from grokbench.methods import METHODS
from grokbench.sweep.mlflow_store import TrackingStore
from grokbench.tasks import TASKS

CURVES = ("train_acc", "test_acc", "train_time_s")  # and what a figure asks for besides
# one colour a method in every panel: the paper's four first, as before the registry grew
COLOURS = {method: f"C{i % 10}" for i, method in enumerate(METHODS)}
# a loss's line style where losses share a panel, and what the figure's note calls it
LOSS_STYLES = {
    "ce": ("-", "solid: cross-entropy"),
    "mse": ("--", "dashed: MSE"),
    "stablemax": (":", "dotted: StableMax"),
}
GRID = 400  # points the seeds' curves are interpolated onto
# the figures' titles say how to read them
MEDIAN_NOTE = "median over seeds, drawn while every seed runs"
EVENTS_NOTE = "thin: each seed; ■ memorised, ★ grokked, each seed's on its own curve"


def loss_style(loss: str) -> str:
    """The line style that tells a loss from the others sharing its panel (solid for one LOSS_STYLES lacks)."""
    return LOSS_STYLES.get(loss, ("-",))[0]


def histories(uri: str, runs: pd.DataFrame, curves: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    """Per run: a frame indexed by optimiser step with one column per curve."""
    store = TrackingStore(uri)
    out = {}
    for run_id in runs["run_id"]:
        columns = {name: pd.Series(store.curve(run_id, name), dtype=float) for name in (*CURVES, *curves)}
        out[run_id] = pd.DataFrame(columns).sort_index()
    return out


def median_while_all_run(curves: list[pd.Series], grid: np.ndarray) -> np.ndarray:
    """The median over runs, each interpolated onto the grid, up to the first run's end (NaN after it): a run stops
    when it groks, so a median over the runs still going would jump wherever one ends."""
    rows = [np.interp(grid, c.index.to_numpy(float), c.to_numpy(float), right=np.nan) for c in curves if len(c)]
    if not rows:
        return np.full_like(grid, np.nan)
    return np.median(np.vstack(rows), 0)


def seed_lines(ax, curves: list[pd.Series], grid: np.ndarray, colour, style: str = "-") -> None:
    """Each run's own curve, thin and faint, over the median's span (a log axis's from the first positive x: a value
    at step 0 would stretch the y axis with a point it cannot show): where the median stops, the runs that went on
    still show."""
    for curve in curves:
        shown = curve[curve.index.to_numpy(float) >= grid[0]]
        ax.plot(shown.index.to_numpy(float), shown.to_numpy(float), style, color=colour, lw=0.7, alpha=0.4)


def mark_events(
    ax, runs: pd.DataFrame, curves: dict[str, pd.Series], events: tuple[tuple[str, str], ...], colour
) -> None:
    """Each run's events (a column of `runs` and its marker) on the run's own curve; a run that never got there
    has no moment to mark."""
    for event, marker in events:
        for run_id, moment in zip(runs["run_id"], runs[event], strict=False):
            curve = curves[run_id]
            if pd.notna(moment) and len(curve):
                value = np.interp(moment, curve.index.to_numpy(float), curve.to_numpy(float))
                ax.plot(
                    [moment], [value], marker, color=colour, markersize=10, markeredgecolor="white", markeredgewidth=0.6
                )


def grid_over(curves: list[pd.Series], log: bool) -> np.ndarray:
    """Where the median of the curves is drawn: evenly from 0 to their last x, or on a log axis evenly in log from
    their first positive x (evenly from 0 where no two of their positive x differ). A run whose x is unknown (NaN:
    no epoch count) adds nothing."""
    xs = [x[np.isfinite(x)] for x in (c.index.to_numpy(float) for c in curves)]
    xs = [x for x in xs if len(x)]
    end = max((x.max() for x in xs), default=0.0)
    first = min((x[x > 0].min() for x in xs if (x > 0).any()), default=0.0)
    if log and 0 < first < end:
        return np.geomspace(first, end, GRID)
    return np.linspace(0, end, GRID)


def grok_threshold(runs: pd.DataFrame) -> float | None:
    """The level of the test figure past which the runs' criterion calls a trial grokked, where they share one: their
    task setting (polynomial: the relative test loss below it), else their task's (test accuracy above it); None
    for runs of several tasks or levels."""
    column = TASK_SETTING + "grok_threshold"
    levels = set(runs[column].dropna()) if column in runs else set()
    if not levels and "task" in runs:
        levels = {getattr(TASKS[t], "grok_threshold", None) for t in set(runs["task"].dropna()) if t in TASKS}
    levels.discard(None)
    return float(levels.pop()) if len(levels) == 1 else None


def threshold_line(ax, runs: pd.DataFrame) -> None:
    """The grokking threshold as a dashed grey line (its dashes longer than a train curve's), where the runs have
    one."""
    level = grok_threshold(runs)
    if level is not None:
        ax.axhline(level, ls=(0, (8, 4)), lw=1, color="0.45", label=f"grokking threshold ({level:g})")


def legend_beside(ax) -> None:
    """The legend to the right of the panel, where it covers no curve (the saved figure grows to hold it)."""
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)


def x_axis(ax, label: str, log: bool) -> None:
    """The x axis labelled; a log one labelled at powers of ten only (within a decade, minor labels overprint each
    other)."""
    from matplotlib.ticker import NullFormatter

    ax.set_xlabel(label)
    if log:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())


def save(fig, out: Path, name: str) -> list[Path]:
    """The figure as `name.png` and `name.pdf` in out, closed."""
    import matplotlib.pyplot as plt

    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    for path in paths:  # a PDF without its creation date, so that a rebuild writes the same bytes
        metadata = {"CreationDate": None} if path.suffix == ".pdf" else None
        fig.savefig(path, dpi=130, bbox_inches="tight", metadata=metadata)
    plt.close(fig)
    return paths


def coloured(groups: list[RunGroup], *, one_axes: bool = False) -> list[tuple[RunGroup, Any]]:
    """Each group with its line colour: a method run as its authors ran it, at one λ, keeps its own; a line per λ
    or per variant (its own settings off their defaults) gets a colour of its own from a palette no method uses,
    the same for the same label in every panel. With `one_axes` (every group drawn in one panel), so does a second
    line of one label (another `by` value, such as another loss)."""
    import matplotlib

    spare_palette = matplotlib.colormaps["tab20b"]
    spare: dict[tuple, int] = {}
    first_by: dict[str, tuple] = {}
    out = []
    for setting in groups:
        first = not one_axes or first_by.setdefault(setting.label, setting.by) == setting.by
        if first and setting.label == METHOD_NAMES.get(setting.method, setting.method):
            out.append((setting, COLOURS.get(setting.method)))  # None: a plug-in's method not installed here
            continue
        i = spare.setdefault((setting.label,) if first else (setting.label, *setting.by), len(spare))
        # tab20b comes in hue groups of four shades: step across the groups first, so neighbours differ in hue
        out.append((setting, spare_palette((4 * i + i // 5) % 20)))
    return out
