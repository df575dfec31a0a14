"""The test figure at memorising beside the task's reference predictor (`Presentation.reference`; polynomial: the
test loss of kernel regression with the initial NTK). Kumar et al.'s account of grokking has a lazy network first
fit the training set as its initial kernel would, its test loss on the kernel's line, and learn features only
after: where the test figure at memorising sits near the reference the network was still lazy when it memorised,
and where it sits well below, it had already left the kernel."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.cells import fmt, median_range_text
from analysis.output import Table
from analysis.runs import presentation, row_settings, setting_name, value_text
from grokbench.sweep.mlflow_store import TrackingStore


def reference_table(uri: str, runs: pd.DataFrame, groups: list) -> Table | None:
    """Per row group (`analysis.groups.row_groups`): the reference's level, the test figure at the memorising
    evaluation, and their ratio per run (median, with its range over the runs that memorised)."""
    shown = presentation(runs)
    if shown.reference is None:
        return None
    varied = row_settings(runs)
    headers = ["Method", "loss", *map(setting_name, varied), "memorised", shown.reference, f"{shown.test} @mem"]
    headers.append("@mem ÷ reference (range)")
    table = Table("reference", f"The test figure at memorising beside {shown.reference}, median over seeds", headers)
    store = TrackingStore(uri)
    for group in groups:
        pairs = [_at_memorising(store, run, shown.test, shown.reference) for _, run in group.runs.iterrows()]
        levels = [level for level, _ in pairs if level is not None]
        reached = [(level, test) for level, test in pairs if level is not None and test is not None]
        ratios = [test / level for level, test in reached]
        row = [group.label, *map(value_text, group.by), f"{len(reached)}/{len(pairs)}"]
        row.append(fmt(float(np.median(levels))) if levels else "—")
        row.append(fmt(float(np.median([test for _, test in reached]))) if reached else "—")
        row.append(median_range_text(ratios) if ratios else "—")
        table.rows.append(row)
    table.notes += [
        f"{shown.reference}: a constant per run, set by its data and initial weights; @mem: at the first evaluation "
        "at which the run counted as memorised; memorised: runs that did, of those that grokked or were censored",
        "ratio: each run's test figure at memorising over its own reference, median (min–max) over the runs",
    ]
    return table if table.rows else None


def _at_memorising(store: TrackingStore, run: pd.Series, test: str, reference: str) -> tuple[float | None, ...]:
    """The run's reference level, and its test figure at memorising (None where it never memorised)."""
    levels = store.curve(run["run_id"], reference)
    level = levels[max(levels)] if levels else None
    step = run["steps_to_memorise"]
    if pd.isna(step):
        return level, None
    return level, store.curve(run["run_id"], test).get(int(step))
