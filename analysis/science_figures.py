"""Figures of particular experiments, drawn where a selection of runs holds them: Kumar et al.'s Fig. 3a (the
`kumar_fig3a` cell: each loss over its initial value against epochs, a colour per α or σ, and the parameter
movement against it), their Fig. 3e phase diagram (runs watched by `stop_rule: converged`), and steps to grok and
the memorise→grok delay against the initialisation scale, a line per method (`mnist_init`); and Prieto et al.'s
softmax collapse (Fig. 2: test accuracy and the share of training points at exactly zero loss, a line per arm,
where runs differ in the loss's precision)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.curve_figures import epoch_histories, reference_line
from analysis.fig3a import ALPHA, KERNEL_LINE, LOSS_RATIOS, at_common_end, fig3a_runs
from analysis.groups import METHOD_NAMES, method_rank, run_groups
from analysis.plotting import COLOURS, coloured, grid_over, loss_style, median_while_all_run, save, seed_lines
from analysis.runs import FINISHED, TASK_SETTING, column, value_text
from analysis.stats import median_or_bound

EPSILON = TASK_SETTING + "epsilon"
# the swept knob of each Fig. 3a figure: the output scale α, or the first layer's weight scale σ (at α = 1)
FIG3A_KNOBS = {ALPHA: ("α", "fig3a_loss_vs_alpha"), "init_scale": ("σ", "fig3a_loss_vs_sigma")}
CROSSINGS = ("final_train_mse_below_epoch", "final_test_mse_below_epoch")


def science_figures(uri: str, runs: pd.DataFrame, out: Path) -> list[Path]:
    """Every figure below that the runs hold."""
    written = []
    polynomial = runs[runs["task"] == "polynomial"]
    fig3a = fig3a_runs(runs)
    for knob, (symbol, name) in FIG3A_KNOBS.items() if not fig3a.empty else ():
        other = "init_scale" if knob == ALPHA else ALPHA  # each sweep moves one knob, the other at 1
        swept = fig3a[fig3a[other] == 1.0]
        if swept[knob].nunique() > 1:
            hist = epoch_histories(uri, swept, (*LOSS_RATIOS, "weight_change", KERNEL_LINE))
            written += save(fig3a_losses(swept, hist, knob, symbol), out, name)
            written += save(movement_figure(swept, hist, knob, symbol), out, name.replace("loss", "movement"))
    phase = polynomial[column(polynomial, TASK_SETTING + "stop_rule", None) == "converged"]
    if phase["status"].isin(FINISHED).any():
        written += save(phase_figure(phase), out, "fig3e_phase_diagram")
    # a run still going (or diverged) has no place on either axis yet
    by_init = runs[(runs["task"] == "mnist") & runs["status"].isin(FINISHED)]
    if by_init["init_scale"].nunique() > 1:
        written += save(init_scale_figure(by_init), out, "steps_to_grok_vs_init_scale")
    by_precision = runs[runs["task"] == "modarith"]
    if by_precision["softmax_precision"].nunique() > 1:
        hist = epoch_histories(uri, by_precision, COLLAPSE)
        written += save(collapse_figure(by_precision, hist), out, "softmax_collapse")
    return written


COLLAPSE = ("test_acc", "train_zero_loss_fraction")


def collapse_figure(runs: pd.DataFrame, hist: dict[str, pd.DataFrame]):
    """Test accuracy, and the share of training points whose float32 softmax cross-entropy is exactly 0 (those
    softmax collapse stopped learning from), against epochs on a log axis: a line per arm and loss, the median over
    seeds, each seed thin beside it (Prieto et al. Fig. 2)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    # a colour per label as in the page's other figures; the loss by line style (StableMax dotted)
    for group, colour in coloured(run_groups(runs, by=("loss",))):
        (loss,) = group.by
        label = group.label if loss == "ce" else f"{group.label}, {loss}"
        style = loss_style(loss)
        for ax, metric in zip(axes, COLLAPSE, strict=True):
            curves = [hist[r][metric].dropna().loc[lambda c: c.index > 0] for r in group.runs["run_id"]]
            grid = grid_over(curves, log=True)
            ax.plot(grid, median_while_all_run(curves, grid), style, color=colour, label=label)
            seed_lines(ax, curves, grid, colour, style)
    for ax, what in zip(axes, ("test accuracy", "training points at zero loss (float32)"), strict=True):
        ax.set(xscale="log", xlabel="epochs", ylabel=what, ylim=(-0.02, 1.02))
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    fig.suptitle("median over seeds, drawn while every seed runs; thin: each seed", fontsize=9)
    return fig


def fig3a_losses(runs: pd.DataFrame, hist: dict[str, pd.DataFrame], knob: str, symbol: str):
    """Train (dashed) and test (solid) loss, each over its value at initialisation, against epochs on a log axis,
    a colour per value of the knob, the median over draws (Kumar et al. Fig. 3a); dotted, the initial kernel's
    regression line, which a lazy network's test loss follows once it fits the training set."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (value, group) in enumerate(runs.groupby(knob, sort=True)):
        for metric, style in zip(LOSS_RATIOS, ("--", "-"), strict=True):
            curves = [hist[r][metric].dropna().loc[lambda c: c.index > 0] for r in group["run_id"]]
            grid = grid_over(curves, log=True)
            label = f"{symbol} = {value_text(value)}" if metric == "test_loss_rel" else None
            ax.plot(grid, median_while_all_run(curves, grid), style, color=f"C{i}", label=label)
    reference_line(ax, runs, hist, KERNEL_LINE)
    ax.set(xscale="log", xlabel="epochs", ylabel="loss / its initial value")
    ax.set_title(f"dashed: train, solid: test; median over {runs['seed'].nunique()} draws", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    return fig


def movement_figure(runs: pd.DataFrame, hist: dict[str, pd.DataFrame], knob: str, symbol: str):
    """‖θ − θ₀‖²/‖θ₀‖² against the knob, each run's at the last epoch every run reached (a σ = 1 run may come from
    the α sweep's longer budget): the logged `weight_change` is ‖θ − θ₀‖/‖θ₀‖, squared here as the authors' is."""
    import matplotlib.pyplot as plt

    end, read = at_common_end(runs, hist, ("weight_change",))
    movement = read["weight_change"] ** 2
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.scatter(runs[knob], movement, s=14, color="C0", alpha=0.5, label="each draw")
    medians = movement.groupby(runs[knob]).median()
    ax.plot(medians.index, medians.to_numpy(), "o-", color="C0", label="median")
    ax.set(xscale="log", yscale="log", xlabel=symbol, ylabel=f"‖θ − θ₀‖² / ‖θ₀‖² at epoch {end:g}")
    ax.set_xticks(medians.index, [value_text(v) for v in medians.index])
    ax.legend(fontsize=8)
    return fig


def phase_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (α, ε): the authors' amount of grokking, max(0, first epoch test MSE < 0.1 − first epoch train MSE
    < 0.1), median over seeds; NaN (censored) where a seed's train or test MSE never fell below it (−1)."""
    crossed = runs[list(CROSSINGS)].astype(float)
    amount = (crossed[CROSSINGS[1]] - crossed[CROSSINGS[0]]).clip(lower=0).where((crossed >= 0).all(axis=1))
    cells = runs.assign(amount=amount).groupby([ALPHA, EPSILON])["amount"]
    return cells.agg(lambda a: a.median() if a.notna().all() else np.nan).unstack(EPSILON).sort_index()


def phase_map(runs: pd.DataFrame) -> tuple[pd.DataFrame, set[tuple[float, float]]]:
    """The amount per cell over every (α, ε) the runs hold, read from the runs that ended (NaN: censored, or no run
    of the cell ended), and the cells with a run that ended."""
    ended = runs[runs["status"].isin(FINISHED)]
    cells = phase_cells(ended) if len(ended) else pd.DataFrame()
    cells = cells.reindex(index=sorted(runs[ALPHA].unique()), columns=sorted(runs[EPSILON].unique()))
    return cells, set(zip(ended[ALPHA], ended[EPSILON], strict=True))


def phase_figure(runs: pd.DataFrame):
    """The heatmap: ε across, α up, as the authors draw it; a censored cell hatched and marked ×, never 0; a cell
    none of whose runs has ended (not run yet, or running) left blank, since nothing is known of it yet."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import SymLogNorm

    cells, ended = phase_map(runs)
    amounts = np.ma.masked_invalid(cells.to_numpy(float))
    fig, ax = plt.subplots(figsize=(6.5, 5))
    # the amounts span orders of magnitude: a log scale (linear below 10 epochs, so that 0 has a colour) from the
    # smallest to the largest keeps the small-α rows' structure visible beside the large-α ones
    low, top = (0.0, 10.0) if amounts.count() == 0 else (float(amounts.min()), float(amounts.max()))
    norm = SymLogNorm(linthresh=10, vmin=low, vmax=max(top, low + 10))
    image = ax.imshow(amounts, origin="lower", cmap="OrRd", aspect="auto", norm=norm)
    fig.colorbar(image, label="epochs: test MSE below the line minus train MSE below it (0.1: theirs); log")
    for i, alpha in enumerate(cells.index):
        for j, epsilon in enumerate(cells.columns):
            if (alpha, epsilon) in ended and np.isnan(cells.iat[i, j]):  # ended with no amount: censored
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="//", edgecolor="0.6", lw=0))
                ax.text(j, i, "×", ha="center", va="center", color="0.3")
    ax.set_xticks(range(len(cells.columns)), [value_text(v) for v in cells.columns], fontsize=7)
    ax.set_yticks(range(len(cells.index)), [value_text(v) for v in cells.index], fontsize=7)
    ax.set(xlabel="ε (kernel alignment)", ylabel="α (laziness)")
    ax.set_title(
        "amount of grokking (Kumar et al. Fig. 3e)\n"
        "×: censored (an MSE never fell below the line); blank: no run ended yet",
        fontsize=9,
    )
    return fig


def init_scale_figure(runs: pd.DataFrame):
    """Steps to grok, and the memorise→grok delay, against the initialisation scale, a line per method: the
    median over seeds (Kaplan–Meier where censored), each seed a small mark, △ a seed censored where its run
    ended; a delay is 0 for a run that grokked before it memorised."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    several_losses = runs["loss"].nunique() > 1
    lines = sorted(runs.groupby(["method", "loss"]), key=lambda item: method_rank(item[0][0]))
    top = grok_and_delay(runs)[0].max()  # steps to grok bound the delays too
    for dodge, ((method, loss), group) in zip(dodges(len(lines)), lines, strict=True):
        colour, label = COLOURS.get(method), METHOD_NAMES.get(method, method) + (f" ({loss})" if several_losses else "")
        grok, delay = grok_and_delay(group)
        for ax, values in zip(axes, (grok, delay), strict=True):
            _median_line(ax, group["init_scale"] * dodge, values, group["status"] == "grokked", colour, label)
    for ax, what in zip(axes, ("optimiser steps to grok", "steps from memorised to grokked"), strict=True):
        ax.set(xscale="log", xlabel="initialisation scale α", ylabel=what)
        # symlog, linear below 10 steps, so that a delay of 0 (grokked on memorising) has a place; nothing is negative
        ax.set_yscale("symlog", linthresh=10)
        # the top marks are often censored runs' △ at the budget: a factor 2 above them keeps each whole
        ax.set_ylim(0, 2 * top if top > 0 else None)
        ax.set_xticks(sorted(runs["init_scale"].unique()), [value_text(v) for v in sorted(runs["init_scale"].unique())])
    axes[0].legend(fontsize=8)
    fig.suptitle(
        "median over seeds (Kaplan–Meier where censored); △: censored where its run ended; "
        "the methods drawn a little apart along α, so that equal values stay visible",
        fontsize=9,
    )
    return fig


def dodges(count: int, step: float = 0.05) -> list[float]:
    """Factors that move `count` lines apart on a log axis, evenly about 1 (each 2^step from the next)."""
    return [2 ** (step * (i - (count - 1) / 2)) for i in range(count)]


def grok_and_delay(runs: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Steps to grok (a censored run: the steps it ran) and steps from memorised to grokked, 0 for a run that
    grokked before it memorised or never memorised (as `grok_phase_time_s`); a censored run's delay is censored at
    its end, counted from its memorisation, or from its start where it never memorised."""
    grokked = runs["status"] == "grokked"
    grok = runs["steps_to_grok"].where(grokked, runs["steps"]).astype(float)
    start = runs["steps_to_memorise"].astype(float).fillna(grok.where(grokked, 0.0))
    return grok, (grok - start).clip(lower=0)


def _median_line(ax, x: pd.Series, values: pd.Series, observed: pd.Series, colour, label: str) -> None:
    xs, medians = [], []
    for value in sorted(x.unique()):
        at = x == value
        seen = observed[at].tolist()
        ax.scatter([value] * at.sum(), values[at], s=12, color=colour, alpha=0.4)
        lost = values[at][~observed[at]]
        ax.scatter([value] * len(lost), lost, marker="^", s=40, facecolors="none", edgecolors=colour)
        median, is_bound = median_or_bound(values[at].tolist(), seen)
        if median is not None and not is_bound:
            xs.append(value)
            medians.append(median)
    ax.plot(xs, medians, "o-", color=colour, label=label)
