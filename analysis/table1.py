"""GrokAlign's Table 1, per loss: each method's steps, seconds and grokking-phase seconds to grok, and its speed-up
over the baseline of its own condition (analysis.stats says how each is estimated and tested)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from analysis.cells import (
    CELL_NOTE,
    number_text,
    per_seed_text,
    sample_text,
    seeds_text,
    speed_columns,
    speed_notes,
    speed_text,
)
from analysis.groups import (
    LOSS_NAMES,
    MEASURES,
    RunGroup,
    by_task_settings,
    reference_baseline,
    run_groups,
    samples,
    with_budget_columns,
    with_conditions,
)
from analysis.output import Table
from analysis.provenance import by_experiment, experiments_note, machine_note
from analysis.runs import event_columns, grokking_at, setting_name, setting_text, value_text, varied_task_settings
from analysis.stats import SpeedUp, speed_up

CONDITION_NOTE = (
    "each speed-up is against the baseline of the row's own condition (a setting named in the rows, "
    "such as frozen embeddings) that changes nothing else; a baseline variant (such as a weight-decay "
    "control) gets a speed-up against it too"
)
UPDATE_COST_NOTE = "ms/update: the median over the row's trials of training time ÷ updates run"


def table1(runs: pd.DataFrame, event: str = "grok", experiments: Sequence[str] = ()) -> list[Table]:
    """Table 1 per loss; with a criterion's further `event` (grok_strict), the same with grokking read as it. Where
    several `experiments` were read, a footnote names each row's runs' experiments."""
    runs = with_budget_columns(runs[runs["status"] != "running"])  # unfinished trials: see progress_note
    if event != "grok":
        runs = grokking_at(runs, event)
    tables = []
    for loss in [loss for loss in ("ce", "mse") if loss in set(runs["loss"])]:  # the paper's order
        table = loss_table(runs[runs["loss"] == loss], loss, event, several=len(experiments) > 1)
        if table.rows:
            tables.append(table)
    return tables


def loss_table(part: pd.DataFrame, loss: str, event: str, several: bool) -> Table:
    varied = varied_task_settings(part)
    scales = sorted(part["init_scale"].dropna().unique())
    by_scale = ["init_scale"] if len(scales) > 1 else []  # each scale is its own condition, with its own baseline
    name, title = f"table1_{loss}", f"Table 1 — {LOSS_NAMES[loss]}"
    if event != "grok":
        name, title = f"{name}_{event}", f"{title}, grokked at {event}"
    headers = ["Method", *map(setting_name, by_scale + varied), "grokked", "seeds"]
    for measure, (header, _, _) in MEASURES.items():
        headers += [header, f"speed-up ({measure})"]
    headers += ["per-seed speed-up (steps / time / phase)", "ms/update", "diverged/failed"]
    table = Table(name, title, headers)
    speeds, sizes, origins = [], [], []
    for init in scales:
        for values, block in condition_blocks(part[part["init_scale"] == init], varied):
            baseline = reference_baseline(block)
            shown = (init, *values) if by_scale else values
            for group in run_groups(block):
                row, columns, row_speeds = _row(group, baseline)
                table.rows.append(row[:1] + [value_text(v) for v in shown] + row[1:])
                table.stats.append(columns)
                speeds += row_speeds
                where = f" ({setting_text(by_scale + varied, shown)})" if shown else ""
                sizes.append(f"{group.label}{where} {columns['n']}")
                origins.append(f"{group.label}{where} {by_experiment(group.runs)}")
    if several_references(with_conditions(part)):
        table.notes.append(CONDITION_NOTE)
    table.notes += [
        f"n per row (trials that grokked or were censored; diverged and failed ones are counted "
        f"apart): {', '.join(sizes)}",
        f"{CELL_NOTE}; {UPDATE_COST_NOTE}",
        *speed_notes(speeds),
        machine_note(part[part["status"].isin(["grokked", "censored"])]),
    ]
    if several:
        table.notes.append(experiments_note(origins))
    if event != "grok":
        table.notes.append(event_note(event))
    return table


def condition_blocks(runs: pd.DataFrame, varied: list[str]) -> list[tuple[tuple, pd.DataFrame]]:
    """The runs per condition, each compared with its own baseline: per value of the task settings the sweep
    varied (α), then per condition the task names (frozen embeddings)."""
    return [
        (values, part)
        for values, block in by_task_settings(runs, varied)
        for _, part in with_conditions(block).groupby("condition", sort=True)
    ]


def event_note(event: str) -> str:
    steps, _, _ = event_columns(event)
    return (
        f"grokked here means the criterion's further event {event} ({steps}: a stricter threshold); a run "
        "that did not reach it is censored where it ended, at its budget"
    )


def several_references(runs: pd.DataFrame) -> bool:
    """Whether the rows are compared with more than one baseline (several conditions), or a baseline row with
    another (a baseline variant)."""
    baselines = runs[runs["method"] == "baseline"]
    variants = "variant" in runs and bool((baselines["variant"] != baselines["condition"]).any())
    return runs["condition"].nunique() > 1 or variants


def _row(group: RunGroup, baseline: pd.DataFrame) -> tuple[list[str], dict, list[SpeedUp]]:
    """The row's text, its CSV columns (n and each speed-up's statistics) and its speed-ups."""
    runs = group.runs
    done = runs[runs["status"].isin(["grokked", "censored"])]
    grokked = int((done["status"] == "grokked").sum())
    apart = int(runs["status"].isin(["diverged", "failed"]).sum())
    row, columns, speeds = [group.label, f"{grokked}/{len(done)}", seeds_text(done)], {"n": len(done)}, []
    reference = group.method == "baseline" and runs.index.isin(baseline.index).all()
    for measure in MEASURES:
        sample = samples(runs, measure)
        row.append(sample_text(sample))
        speed = None
        if not reference and not baseline.empty:
            speed = speed_up(samples(baseline, measure), sample)
            speeds.append(speed)
        row.append("×1" if reference else speed_text(speed))
        columns.update(speed_columns(measure, speed))
    per_seed = [per_seed_text(s) for s in speeds]
    row.append(" / ".join(per_seed) if any(t != "—" for t in per_seed) else "—")
    row.append(number_text(ms_per_update(done).median()))
    row.append(str(apart) if apart else "")
    return row, columns, speeds


def ms_per_update(runs: pd.DataFrame) -> pd.Series:
    """Each trial's training milliseconds per optimiser update (what a method costs, and how busy the machine was)."""
    return 1e3 * runs["train_time_s"] / runs["steps"].where(runs["steps"] > 0)
