"""Kumar et al.'s Fig. 3e as a table: the amount of grokking per (α, ε) cell of a phase grid (runs watched by
`stop_rule: converged`), whether its shape is theirs (largest at large α and small ε, by rank correlation), and
what a cell cost, which decides whether the authors' whole 14 × 14 grid is affordable."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from analysis.cells import fmt
from analysis.output import Table
from analysis.runs import TASK_SETTING, value_text
from analysis.science_figures import ALPHA, EPSILON, phase_cells

FULL_GRID_CELLS = 14 * 14  # the authors' grid
FULL_GRID_BUDGET_H = 6.0  # CPU-hours the whole grid may take (issue 36), else only the 7 × 7 runs


def phase_runs(runs: pd.DataFrame) -> pd.DataFrame:
    column = TASK_SETTING + "stop_rule"
    if column not in runs:
        return runs.iloc[0:0]
    return runs[(runs["task"] == "polynomial") & (runs[column] == "converged") & (runs["status"] != "running")]


def phase_table(runs: pd.DataFrame) -> Table | None:
    """α down, ε across: the amount of grokking in epochs (median over seeds), "censored" where a seed's train or
    test MSE never fell below the line."""
    runs = phase_runs(runs)
    if runs.empty:
        return None
    cells = phase_cells(runs)
    headers = ["α \\ ε", *(value_text(e) for e in cells.columns)]
    table = Table("fig3e_phase", "Fig. 3e — the amount of grokking (epochs) per α and ε", headers)
    for alpha, row in cells.iterrows():
        table.rows.append([value_text(alpha), *("censored" if np.isnan(v) else fmt(float(v)) for v in row)])
        table.stats.append({"alpha": alpha, **{f"epsilon={value_text(e)}": v for e, v in row.items()}})
    table.notes += [
        "each cell: max(0, first epoch test MSE < 0.1 − first epoch train MSE < 0.1), both watched every epoch, the "
        "median over seeds; censored: a seed's train or test MSE never fell below 0.1 within its run",
        shape_note(cells),
        cost_note(runs),
    ]
    return table


def shape_note(cells: pd.DataFrame) -> str:
    """Spearman's rank correlation of the amount with α and with ε over the cells that are not censored."""
    long = cells.stack().rename("amount").reset_index()  # stack drops the censored (NaN) cells
    if len(long) < 3:
        return "shape: fewer than 3 cells not censored, no rank correlation"
    parts = []
    for column, name in ((ALPHA, "α"), (EPSILON, "ε")):
        found = stats.spearmanr(long[column], long["amount"])
        parts.append(f"with {name} ρ = {found.statistic:+.2f} (p = {found.pvalue:.2g})")
    return (
        f"shape: Spearman's rank correlation of the amount over the {len(long)} cells not censored (scipy), "
        + ", ".join(parts)
        + "; theirs: largest at large α and small ε (ρ with α > 0, with ε < 0)"
    )


def cost_note(runs: pd.DataFrame) -> str:
    per_cell = float(runs["wall_s"].mean())
    whole = per_cell * FULL_GRID_CELLS / 3600
    verdict = "within" if whole <= FULL_GRID_BUDGET_H else "over"
    return (
        f"cost: {per_cell:,.0f} s of one thread per cell on average (wall_s, {len(runs)} runs); × {FULL_GRID_CELLS} "
        f"cells = {whole:.1f} CPU-hours, {verdict} the {FULL_GRID_BUDGET_H:g} CPU-hours the authors' whole grid may "
        "take"
    )
