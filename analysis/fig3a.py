"""Kumar et al.'s Fig. 3a cell (`polynomial --preset kumar_fig3a`): which runs are of it, and each run's curves read
at the last epoch every one of them reached, for its figures and its table."""

from __future__ import annotations

import pandas as pd

from analysis.runs import TASK_SETTING

ALPHA = TASK_SETTING + "alpha"
LOSS_RATIOS = ("train_loss_rel", "test_loss_rel")
KERNEL_LINE = "kernel_regression_test_loss_rel"  # the test loss of kernel regression with the initial NTK


def fig3a_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of the cell (its inputs scaled in the pre-activation), of either sweep."""
    polynomial = runs[runs["task"] == "polynomial"]
    return polynomial[polynomial.get(TASK_SETTING + "input_scaling", pd.Series(dtype=object)) == "preactivation"]


def at_common_end(
    runs: pd.DataFrame, hist: dict[str, pd.DataFrame], metrics: tuple[str, ...]
) -> tuple[float, pd.DataFrame]:
    """The last epoch every run reached in every metric (a σ = 1 run may come from the α sweep's longer budget),
    and each run's metrics there (the last value logged at or before it), indexed as `runs`."""
    curves = {(r, m): hist[r][m].dropna() for r in runs["run_id"] for m in metrics}
    end = min(c.index.max() for c in curves.values())
    values = {m: [curves[r, m].loc[:end].iloc[-1] for r in runs["run_id"]] for m in metrics}
    return end, pd.DataFrame(values, index=runs.index)
