"""Kumar et al.'s Fig. 3e as a table: the amount of grokking per (α, ε) cell of a phase grid (runs watched by
`stop_rule: converged`), whether its shape is theirs (largest at large α and small ε, by rank correlation), and
what a cell cost, which decides whether the authors' whole 14 × 14 grid is affordable."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from analysis.cells import fmt
from analysis.fig3a import ALPHA
from analysis.output import Table
from analysis.runs import FINISHED, TASK_SETTING, column, value_text
from analysis.science_figures import EPSILON, phase_map

FULL_GRID_CELLS = 14 * 14  # the authors' grid
FULL_GRID_BUDGET_H = 6.0  # CPU-hours the whole grid may take (issue 36), else only the 7 × 7 runs


def phase_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The polynomial runs watched by the converged rule that ended (a diverged or failed one too: it cost)."""
    watched = column(runs, TASK_SETTING + "stop_rule", None) == "converged"
    return runs[(runs["task"] == "polynomial") & watched & (runs["status"] != "running")]


def phase_table(runs: pd.DataFrame) -> Table | None:
    """α down, ε across: the amount of grokking in epochs (median over seeds), "censored" where a seed's train or
    test MSE never fell below the line, "diverged" where no seed of the cell ended either way."""
    runs = phase_runs(runs)
    if runs.empty:
        return None
    cells, ended = phase_map(runs)
    ran = set(zip(runs[ALPHA], runs[EPSILON], strict=True))
    headers = ["α \\ ε", *(value_text(e) for e in cells.columns)]
    table = Table("fig3e_phase", "Fig. 3e — the amount of grokking (epochs) per α and ε", headers)
    for alpha, row in cells.iterrows():
        texts = [cell_text(v, (alpha, e) in ran, (alpha, e) in ended) for e, v in row.items()]
        table.rows.append([value_text(alpha), *texts])
        table.stats.append({"alpha": alpha, **{f"epsilon={value_text(e)}": v for e, v in row.items()}})
    table.notes += [
        "each cell: max(0, first epoch test MSE < 0.1 − first epoch train MSE < 0.1) (the line: `crossing_mse`, the "
        "authors' 0.1 by default), both watched every epoch, the median over seeds; censored: a seed's train or test "
        "MSE never fell below the line within its run; diverged: no "
        "seed of the cell ended grokked or censored; —: not run",
        shape_note(cells),
        cost_note(runs),
    ]
    return table


def phase_end_table(runs: pd.DataFrame) -> Table | None:
    """α down, ε across: the test MSE where each cell's run stopped (median over seeds), so that a censored cell of
    the phase table shows whether it stalled above the line or was still on its way down at the budget (†)."""
    ran = phase_runs(runs)
    if ran.empty:
        return None
    ended = ran[ran["status"].isin(FINISHED)]
    stops = pd.DataFrame(
        {
            "loss": column(ended, "final_test_loss"),
            "budget": column(ended, "steps_to_converged").isna(),  # not stopped by the converged rule
            ALPHA: ended[ALPHA],
            EPSILON: ended[EPSILON],
        }
    )
    cells = stops.groupby([ALPHA, EPSILON]).agg(loss=("loss", "median"), budget=("budget", "any"))
    ended_cells = set(cells.index)
    ran_cells = set(zip(ran[ALPHA], ran[EPSILON], strict=True))
    alphas, epsilons = sorted(ran[ALPHA].unique()), sorted(ran[EPSILON].unique())
    headers = ["α \\ ε", *(value_text(e) for e in epsilons)]
    table = Table("fig3e_end", "Fig. 3e — the test MSE where each cell's run stopped", headers)
    for alpha in alphas:
        texts = []
        for epsilon in epsilons:
            cell = (alpha, epsilon)
            if cell not in ended_cells:
                texts.append("diverged" if cell in ran_cells else "—")
                continue
            loss, budget = cells.loc[cell, "loss"], bool(cells.loc[cell, "budget"])
            texts.append("no loss" if np.isnan(loss) else fmt(float(loss)) + ("†" if budget else ""))
        table.rows.append([value_text(alpha), *texts])
        losses = {f"epsilon={value_text(e)}": cells["loss"].get((alpha, e), np.nan) for e in epsilons}
        table.stats.append({"alpha": alpha, **losses})
    table.notes.append(
        "each cell: the test MSE where the run stopped, on the phase table's absolute scale, the median over seeds; "
        "stopped by the converged rule (both MSEs changing by less than `converge_tolerance` over `converge_window` "
        "epochs, the test MSE below its initial value: the authors' 1e-5 over 5 epochs by default) or, marked †, "
        "where a seed was not (it ran to its budget); diverged: no seed of the cell ended grokked or censored; "
        "—: not run"
    )
    return table


def cell_text(value: float, ran: bool, ended: bool) -> str:
    if not ended:
        return "diverged" if ran else "—"
    return "censored" if np.isnan(value) else fmt(float(value))


def shape_note(cells: pd.DataFrame) -> str:
    """Spearman's rank correlation of the amount with α and with ε over the cells that are not censored."""
    long = cells.stack().rename("amount").reset_index()  # stack drops the censored (NaN) cells
    left_out = int(cells.isna().to_numpy().sum())
    if len(long) < 3 or long["amount"].nunique() < 2:
        return f"shape: {len(long)} cells not censored, {'too few' if len(long) < 3 else 'all equal'}: no correlation"
    found = {name: stats.spearmanr(long[column], long["amount"]) for column, name in ((ALPHA, "α"), (EPSILON, "ε"))}
    theirs = {"α": found["α"].statistic > 0, "ε": found["ε"].statistic < 0}
    held = [name for name in found if theirs[name] and found[name].pvalue < 0.05]
    verdict = "both hold" if len(held) == 2 else f"only the {held[0]} side holds" if held else "neither holds"
    parts = ", ".join(f"with {n} ρ = {f.statistic:+.2f} (p = {f.pvalue:.2g})" for n, f in found.items())
    return (
        f"shape: Spearman's rank correlation of the amount over the {len(long)} cells not censored (scipy; "
        f"{left_out} censored or diverged cells left out), {parts}; theirs, largest at large α and small ε "
        f"(ρ > 0 with α, < 0 with ε, each at p < 0.05): {verdict}"
    )


def cost_note(runs: pd.DataFrame) -> str:
    """The mean cost of a cell × 196 against the budget; where the grid ran as several sweeps (the 7 × 7 grid first,
    whose cost decided whether the rest ran), each sweep's mean cell and its number of cells too."""
    seconds = whole_wall_s(runs)
    per_cell = float(seconds.groupby([runs[ALPHA], runs[EPSILON]]).sum().mean())
    whole = per_cell * FULL_GRID_CELLS / 3600
    verdict = "within" if whole <= FULL_GRID_BUDGET_H else "over"
    note = (
        f"cost: {per_cell:,.0f} s of one thread per cell on average (wall_s summed over a cell's runs, a resumed "
        f"run's scaled to all its steps; {len(runs)} runs); × {FULL_GRID_CELLS} cells = {whole:.1f} CPU-hours, "
        f"{verdict} the {FULL_GRID_BUDGET_H:g} CPU-hours the authors' whole grid may take"
    )
    cells = seconds.groupby([runs["sweep_id"], runs[ALPHA], runs[EPSILON]]).sum().groupby(level=0)
    if cells.ngroups < 2:
        return note
    each = ", ".join(f"{sweep} {s.mean():,.0f} s a cell ({len(s)} cells)" for sweep, s in cells)
    return f"{note}; by sweep: {each}"


def whole_wall_s(runs: pd.DataFrame) -> pd.Series:
    """`wall_s` covers one process: a run resumed from a checkpoint ran only its steps after the resume in that
    process, so its whole cost is taken as its wall_s scaled by all its steps over those."""
    resumed = column(runs, "resumed_from_step").fillna(0).astype(float)
    steps = runs["steps"].astype(float)
    return runs["wall_s"] * (steps / (steps - resumed)).where(steps > resumed, 1.0)
