"""The end of Kumar et al.'s Fig. 3a cell, per output scale α and weight scale σ: the parameter movement
‖θ − θ₀‖²/‖θ₀‖² and the test loss over its initial value. Their Fig. 7 (d–f) holds that both are set by σ²·α
alone, so the rows are ordered by it: runs of the two sweeps at the same σ²·α should agree."""

from __future__ import annotations

import pandas as pd

from analysis.cells import fmt, median_range_text
from analysis.curve_figures import epoch_histories
from analysis.fig3a import ALPHA, LOSS_RATIOS, at_common_end, fig3a_runs
from analysis.groups import run_groups
from analysis.output import Table
from analysis.runs import value_text

MOVEMENT = "‖θ − θ₀‖²/‖θ₀‖²"


def movement_table(uri: str, runs: pd.DataFrame) -> Table | None:
    """A row per method, α and σ of the cell's runs, read at the last epoch every one of them reached."""
    cell = fig3a_runs(runs)
    cell = cell[cell["status"].isin(["grokked", "censored"])]
    if cell.empty or cell[[ALPHA, "init_scale"]].drop_duplicates().shape[0] < 2:
        return None
    test = LOSS_RATIOS[1]
    hist = epoch_histories(uri, cell, ("weight_change", test))
    end, read = at_common_end(cell, hist, ("weight_change", test))
    table = Table(
        "movement",
        f"Parameter movement and test loss at epoch {fmt(end)}, by σ²·α",
        ["Method", "σ²·α", "alpha", "σ", "runs", MOVEMENT, test],
    )
    cell = cell.assign(
        product=cell["init_scale"] ** 2 * cell[ALPHA], movement=read["weight_change"] ** 2, test=read[test]
    )
    for group in run_groups(cell, by=("product", ALPHA, "init_scale")):
        table.rows.append(
            [group.label, *map(value_text, group.by), str(len(group.runs))]
            + [median_range_text(group.runs[column]) for column in ("movement", "test")]
        )
    table.notes.append(
        f"each run read at epoch {fmt(end)}, the last every run of the cell reached (its last value logged by then); "
        "median (min–max) over the runs; the logged weight_change is ‖θ − θ₀‖/‖θ₀‖, squared here as the "
        "authors' is"
    )
    return table
