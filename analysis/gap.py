"""The authors' own measure of grokking, where a task declares one (`Presentation.gap`): the epochs from its train
figure first falling below an absolute value to its test figure doing so (Kumar et al., Fig. 3e: train and test
MSE below 0.1), read off the logged curves. It sits beside the task's criterion (relative thresholds, fixed
before the sweeps) so that a conclusion can be checked under the published definition too."""

from __future__ import annotations

import pandas as pd

from analysis.cells import cell_text
from analysis.output import Table
from analysis.runs import presentation, row_settings, setting_name, value_text
from analysis.stats import cell
from grokbench.sweep.mlflow_store import TrackingStore


def gap_table(uri: str, runs: pd.DataFrame, groups: list) -> Table | None:
    """Per row group (`analysis.groups.row_groups`: method, loss, value of each varied task setting): the epochs at
    which the train and the test figure first fell below the value (a run that never did censored where it ended),
    and the gap between them over the runs that reached both."""
    declared = presentation(runs).gap
    if declared is None:
        return None
    train, test, value = declared
    varied = row_settings(runs)
    below = [f"{name} < {value:g}" for name in (train, test)]
    headers = [
        "Method",
        "loss",
        *map(setting_name, varied),
        *(h for b in below for h in (b, f"epochs to {b}")),
        "gap (epochs)",
    ]
    table = Table("gap", f"The authors' measure: epochs to {train} and to {test} below {value:g}", headers)
    store = TrackingStore(uri)
    for setting in groups:
        crossings = [
            (first_below(store, run, train, value), first_below(store, run, test, value))
            for _, run in setting.runs.iterrows()
        ]
        ended = setting.runs["epochs"].astype(float).tolist()
        row = [setting.label, *map(value_text, setting.by)]
        for side in (0, 1):
            reached = [c[side] for c in crossings]
            c = cell(
                [e if r is None else r for r, e in zip(reached, ended, strict=False)], [r is not None for r in reached]
            )
            row += [f"{c.grokked}/{c.n}", cell_text(c)]
        gaps = [b - a for a, b in crossings if a is not None and b is not None]
        row.append(f"{cell_text(cell(gaps, [True] * len(gaps)))} over {len(gaps)}" if gaps else "—")
        table.rows.append(row)
    table.notes += [
        f"the first evaluation at which each curve was below {value:g} (absolute), in epochs; k/N: runs that got "
        "there, a run that did not censored where it ended (mean ± std (median), else the Kaplan–Meier median or "
        "> t)",
        "gap: test epoch − train epoch, mean ± std (median) over the runs that reached both",
    ]
    return table if table.rows else None


def first_below(store: TrackingStore, run: pd.Series, curve: str, value: float) -> float | None:
    """The epoch of the run's first evaluation with `curve` below `value` within the steps it counts (all it ran, or
    those within a smaller budget the tables apply); None where it never was."""
    steps = [
        step
        for step, figure in sorted(store.curve(run["run_id"], curve).items())
        if figure < value and step <= run["steps"]
    ]
    return steps[0] * run["epochs"] / run["steps"] if steps else None
