"""`python -m analysis.tables`: GrokAlign's Table 1 (and the sensitivity, search and geometry tables) from MLflow.

Steps are optimiser updates; times are training seconds (updates only). A trial that never grokked is censored
at its budget: cells holding one show a Kaplan–Meier median, or "> t" where the KM curve never falls to 1/2.
Speed-up = baseline ÷ method (> 1 is faster): a ratio of geometric means with a Welch test on log values where
every trial grokked, else a log-normal AFT time ratio with a log-rank test, or a bound (≥ / ≤) where a row has
too few grokked trials to fit; each table's footnote and CSV columns say which (analysis/stats.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from analysis.cells import cell_text, fmt, per_seed_text, sample_text, speed_columns, speed_notes, speed_text
from analysis.gap import gap_table
from analysis.output import Table, add_format_argument, log_analysis_run, run_command, show_and_write
from analysis.runs import (
    DEFAULT_EXPERIMENT,
    AnalysisError,
    at_budget,
    budget_note,
    event_columns,
    further_events,
    grokking_at,
    load_runs,
    presentation,
    progress_note,
    setting_name,
    setting_text,
    shown,
    varied_task_settings,
)
from analysis.stats import Sample, SpeedUp, cell, speed_up
from grokbench.sweep.keys import EXPERIMENT_PREFIX, experiment_name
from grokbench.sweep.mlflow_store import TrackingStore, tracking_uri

METHOD_NAMES = {
    "baseline": "Baseline",
    "grokalign": "GrokAlign",
    "grokfast": "Grokfast",
    "adversarial": "Adversarial Training",
}
LOSS_NAMES = {"mse": "MSE", "ce": "Cross-entropy"}
FIGURES = {  # column → (title, value when grokked, value at the budget when censored)
    "steps": ("Number of Steps", "steps_to_grok", "steps"),
    "time": ("Absolute Time (s)", "time_to_grok_s", "train_time_s"),
    "phase": ("Grokking Phase Time (s)", "grok_phase_time_s", "phase_at_budget"),
}


def method_rank(method: str) -> tuple[int, str]:
    """The paper's row order (Baseline, GrokAlign, Grokfast, Adversarial Training), other methods after it."""
    return (list(METHOD_NAMES).index(method) if method in METHOD_NAMES else len(METHOD_NAMES), method)


# ---- samples ----------------------------------------------------------------------------------------------------


def with_budget_columns(runs: pd.DataFrame) -> pd.DataFrame:
    runs = runs.copy()
    # a censored run's grokking phase lasted from memorising to the budget; one that never memorised has not begun it
    runs["phase_at_budget"] = (runs["train_time_s"] - runs["time_to_memorise_s"]).fillna(0.0)
    return runs


def samples(group: pd.DataFrame, figure: str) -> Sample:
    """(values, observed, seeds) over the group's grokked and censored trials."""
    _, at_grok, at_budget = FIGURES[figure]
    done = group[group["status"].isin(["grokked", "censored"])]
    observed = (done["status"] == "grokked").tolist()
    values = [float(r[at_grok] if o else r[at_budget]) for o, (_, r) in zip(observed, done.iterrows(), strict=False)]
    return Sample(values, observed, done["seed"].tolist())


def row_label(method: str, lam: float, shared: bool, variant: str = "") -> str:
    """The method's name, with λ where it ran at several and its own settings where they differ from its
    defaults (a variant, e.g. GrokAlign's cheaper penalties)."""
    name = METHOD_NAMES.get(method, method)
    details = [] if shared or method == "baseline" else [f"λ={lam:g}"]
    details += [variant] if variant else []
    return f"{name} ({', '.join(details)})" if details else name


class Setting(NamedTuple):
    """The runs of one method at one λ (and one value of each `by` column), as a table row or a figure's line."""

    label: str
    method: str
    lam: float
    several_lams: bool  # the method ran at more than one λ (within its `by` group): the label names λ
    by: tuple
    runs: pd.DataFrame


def settings(runs: pd.DataFrame, by: tuple[str, ...] = ()) -> list[Setting]:
    """One group per method, λ and variant (and `by` values), in paper order: method, then λ, variant, `by`."""
    if "variant" not in runs:  # runs that did not come through analysis.runs: the methods as their authors ran them
        runs = runs.assign(variant="")
    several = runs.groupby(["method", *by])["lam"].transform("nunique") > 1
    groups = []
    for (method, lam, variant, *rest), group in runs.groupby(["method", "lam", "variant", *by]):
        many = bool(several[group.index[0]])
        label = row_label(method, lam, shared=not many, variant=variant)
        groups.append(Setting(label, method, lam, many, tuple(rest), group))
    return sorted(groups, key=lambda s: (method_rank(s.method), s.lam, s.label, s.by))


# ---- Table 1 ------------------------------------------------------------------------------------------------------


def table1(runs: pd.DataFrame, event: str = "grok") -> list[Table]:
    """Table 1 per loss; with a criterion's further `event` (grok_strict), the same with grokking read as it."""
    runs = with_budget_columns(runs[runs["status"] != "running"])  # unfinished trials: see progress_note
    if event != "grok":
        runs = grokking_at(runs, event)
    tables = []
    for loss in [loss for loss in ("ce", "mse") if loss in set(runs["loss"])]:  # the paper's order
        part = runs[runs["loss"] == loss]
        varied = varied_task_settings(part)
        name, title = f"table1_{loss}", f"Table 1 — {LOSS_NAMES[loss]}"
        if event != "grok":
            name, title = f"{name}_{event}", f"{title}, grokked at {event}"
        table = Table(
            name,
            title,
            [
                "Method",
                *map(setting_name, varied),
                "grokked",
                "seeds",
                FIGURES["steps"][0],
                "speed-up (steps)",
                FIGURES["time"][0],
                "speed-up (time)",
                FIGURES["phase"][0],
                "speed-up (phase)",
                "per-seed speed-up (steps / time / phase)",
                "ms/update",
                "diverged/failed",
            ],
        )
        speeds, sizes = [], []
        for init in sorted(part["init_scale"].dropna().unique()):
            for values, block in condition_blocks(part[part["init_scale"] == init], varied):
                baseline = reference_baseline(block)
                for setting in settings(block):
                    row, columns, row_speeds = _table1_row(setting, baseline)
                    table.rows.append(row[:1] + [shown(v) for v in values] + row[1:])
                    table.stats.append(columns)
                    speeds += row_speeds
                    where = f" ({setting_text(varied, values)})" if varied else ""
                    sizes.append(f"{setting.label}{where} {columns['n']}")
            if part["init_scale"].nunique() > 1:
                table.notes.append(f"rows above for init scale {init:g}")
        if several_references(with_conditions(part)):
            table.notes.append(CONDITION_NOTE)
        if table.rows:
            table.notes += [
                f"n per row (trials that grokked or were censored; diverged and failed ones are counted "
                f"apart): {', '.join(sizes)}",
                f"{CELL_NOTE}; {UPDATE_COST_NOTE}",
                *speed_notes(speeds),
            ]
            if event != "grok":
                table.notes.append(event_note(event))
            tables.append(table)
    return tables


def by_task_settings(runs: pd.DataFrame, varied: list[str]) -> list[tuple[tuple, pd.DataFrame]]:
    """The runs per value of the varied task settings (one group of all where none varies)."""
    return list(runs.groupby(varied, sort=True)) if varied else [((), runs)]


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


def with_conditions(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs that did not come through analysis.runs (no condition named) are all of one condition."""
    return runs if "condition" in runs else runs.assign(condition="")


def reference_baseline(block: pd.DataFrame) -> pd.DataFrame:
    """What a block's rows (one init scale, one condition) are compared with: its baseline that changes nothing but
    the condition (not a baseline variant, such as a weight-decay control), else every baseline of the block."""
    baselines = block[block["method"] == "baseline"]
    if "variant" not in baselines:
        return baselines
    plain = baselines[baselines["variant"] == baselines["condition"]]
    return plain if not plain.empty else baselines


def several_references(runs: pd.DataFrame) -> bool:
    """Whether the rows are compared with more than one baseline (several conditions), or a baseline row with
    another (a baseline variant)."""
    baselines = runs[runs["method"] == "baseline"]
    variants = "variant" in runs and bool((baselines["variant"] != baselines["condition"]).any())
    return runs["condition"].nunique() > 1 or variants


CONDITION_NOTE = (
    "each speed-up is against the baseline of the row's own condition (a setting named in the rows, "
    "such as frozen embeddings) that changes nothing else; a baseline variant (such as a weight-decay "
    "control) gets a speed-up against it too"
)


def seeds_text(runs: pd.DataFrame) -> str:
    return ", ".join(f"{seed:g}" for seed in sorted(runs["seed"].dropna().unique())) or "—"


CELL_NOTE = (
    "each cell: mean ± std over seeds (median) when every seed grokked, else the Kaplan–Meier median, or "
    "> t where it never fell to 1/2 (t: the last time followed); steps are optimiser updates, times are "
    "training seconds"
)
UPDATE_COST_NOTE = "ms/update: the median over the row's trials of training time ÷ updates run"


def _table1_row(setting: Setting, baseline: pd.DataFrame) -> tuple[list[str], dict, list[SpeedUp]]:
    """The row's text, its CSV columns (n and each speed-up's statistics) and its speed-ups."""
    group = setting.runs
    done = group[group["status"].isin(["grokked", "censored"])]
    grokked = int((done["status"] == "grokked").sum())
    apart = int(group["status"].isin(["diverged", "failed"]).sum())
    row, columns, speeds = [setting.label, f"{grokked}/{len(done)}", seeds_text(done)], {"n": len(done)}, []
    reference = setting.method == "baseline" and group.index.isin(baseline.index).all()
    for figure in FIGURES:
        sample = samples(group, figure)
        row.append(sample_text(sample))
        speed = None
        if not reference and not baseline.empty:
            speed = speed_up(samples(baseline, figure), sample)
            speeds.append(speed)
        row.append("×1" if reference else speed_text(speed))
        columns.update(speed_columns(figure, speed))
    per_seed = [per_seed_text(s) for s in speeds]
    row.append(" / ".join(per_seed) if any(t != "—" for t in per_seed) else "—")
    row.append(_number(ms_per_update(done).median()))
    row.append(str(apart) if apart else "")
    return row, columns, speeds


def ms_per_update(runs: pd.DataFrame) -> pd.Series:
    """Each trial's training milliseconds per optimiser update (what a method costs, and how busy the machine was)."""
    return 1e3 * runs["train_time_s"] / runs["steps"].where(runs["steps"] > 0)


def trials_table(runs: pd.DataFrame) -> Table:
    """Every finished trial, one row each: what the Table-1 cells summarise, and each trial's speed per update (a
    trial slowed by a busy machine shows here, not only in a wider interval)."""
    varied, events = varied_task_settings(runs), further_events(runs)
    final = f"final_{presentation(runs).test}"  # the test figure the task's criterion reads, at the trial's end
    # the trial key last: rows a condition tells apart (frozen embeddings, say) keep one order in every store
    finished = runs[runs["status"] != "running"].sort_values(
        ["experiment", "loss", "method", "lam", "init_scale", *varied, "seed", "trial_key"], key=_method_order
    )
    table = Table(
        "trials",
        "Every trial",
        [
            "sweep",
            "method",
            "loss",
            "λ",
            "init",
            *map(setting_name, varied),
            "seed",
            "status",
            "steps to grok",
            *[f"steps to {e}" for e in events],
            "time to grok (s)",
            "phase time (s)",
            "updates run",
            "ms/update",
            final.replace("_", " "),
        ],
        printed=False,
    )
    for _, r in finished.iterrows():
        table.rows.append(
            [
                str(r["sweep_id"]),
                row_label(r["method"], r["lam"], shared=True, variant=r["variant"]),
                r["loss"],
                f"{r['lam']:g}",
                f"{r['init_scale']:g}",
                *[shown(r[c]) for c in varied],
                f"{r['seed']:g}",
                r["status"],
                _whole(r["steps_to_grok"]),
                *[_whole(r[event_columns(e)[0]]) for e in events],
                _number(r["time_to_grok_s"]),
                _number(r["grok_phase_time_s"]),
                _whole(r["steps"]),
                _number(1e3 * r["train_time_s"] / r["steps"] if r["steps"] else None),
                "—" if pd.isna(r.get(final)) else f"{r[final]:.4f}",
            ]
        )
    table.notes.append(
        "steps are optimiser updates; times are training seconds; a censored trial has no time to "
        "grok, and ran its whole budget (updates run)"
    )
    return table


def _method_order(column: pd.Series) -> pd.Series:
    return column.map(method_rank) if column.name == "method" else column


def _whole(value) -> str:
    return "—" if pd.isna(value) else f"{int(value):,}"


def _number(value) -> str:
    return "—" if value is None or pd.isna(value) else f"{value:.1f}"


# ---- sensitivity, search and geometry tables -------------------------------------------------------------------------


def sensitivity(runs: pd.DataFrame, by: str, title: str, name: str) -> Table | None:
    """Median time and steps to grok against one setting (λ or init scale), per method and loss."""
    runs = with_budget_columns(runs[runs["status"] != "running"])
    varied = varied_groups(runs, by)
    if not varied:
        return None
    table = Table(name, title, ["Method", "loss", by, "grokked", "seeds", "steps", "time (s)", "speed-up (time)"])
    speeds = []
    runs = with_conditions(runs)
    for (method, loss, condition), group in varied:
        for value, sub in group.groupby(by, sort=True):
            block = runs[(runs["loss"] == loss) & (runs["condition"] == condition)]
            baseline = reference_baseline(
                block[block["init_scale"] == (value if by == "init_scale" else sub["init_scale"].iloc[0])]
            )
            steps, time = samples(sub, "steps"), samples(sub, "time")
            speed = speed_up(samples(baseline, "time"), time) if method != "baseline" and not baseline.empty else None
            speeds += [speed] if speed else []
            name = METHOD_NAMES.get(method, method) + (f" ({condition})" if condition else "")
            done = sub[sub["status"].isin(["grokked", "censored"])]
            table.rows.append(
                [
                    name,
                    loss,
                    f"{value:g}",
                    f"{sum(steps.observed)}/{len(steps.values)}",
                    seeds_text(done),
                    sample_text(steps),
                    sample_text(time),
                    speed_text(speed),
                ]
            )
            table.stats.append({"n": len(time.values), **speed_columns("time", speed)})
    table.notes += [
        "n per row: the N of grokked k/N (trials that grokked or were censored)",
        CELL_NOTE,
        *speed_notes(speeds, per_seed_shown=False),
    ]
    return table


EVENT_NAMES = {"memorise": "memorised", "grok": "grokked"}


def events_table(runs: pd.DataFrame) -> Table | None:
    """Epochs to memorise, to grok and to each further event of the criterion (a stricter threshold), per method
    and per value of each task setting the sweep varied: what Table 1 (one threshold, no memorisation, no task
    setting) leaves out; none where it leaves nothing out."""
    varied, events = varied_task_settings(runs), ["memorise", "grok", *further_events(runs)]
    if not varied and len(events) == 2:
        return None
    headers = ["Method", "loss", *map(setting_name, varied)]
    headers += [h for e in events for h in (EVENT_NAMES.get(e, e), f"epochs to {e}")]
    table = Table("events", "Epochs to memorise, to grok and to each further event", headers)
    for setting in rows(runs, varied):
        row, columns = [setting.label, *map(shown, setting.by)], {"n": len(setting.runs)}
        for event in events:
            sample = event_sample(setting.runs, event)
            c = cell(sample.values, sample.observed)
            row += [f"{c.grokked}/{c.n}", cell_text(c)]
            columns.update(
                {
                    f"{event}_reached": c.grokked,
                    f"epochs_to_{event}_median": c.median,
                    f"epochs_to_{event}_exceeds": c.exceeds,
                }
            )
        table.rows.append(row)
        table.stats.append(columns)
    table.notes += [
        "k/N: trials that reached the event of those that grokked or were censored; a trial that did not reach it is "
        "censored where it ended (at its budget, or where it stopped once it grokked and reached every further "
        "event), so a cell holding one shows the Kaplan–Meier median, or > t where it never fell to 1/2",
        "each cell otherwise: mean ± std over seeds (median), in epochs",
    ]
    return table if table.rows else None


def rows(runs: pd.DataFrame, varied: list[str]) -> list[Setting]:
    """A table's row groups: the runs that grokked or were censored, per loss, value of each varied task setting
    and method (paper order)."""
    finished = runs[runs["status"].isin(["grokked", "censored"])]
    return sorted(settings(finished, by=("loss", *varied)), key=lambda s: s.by)


def event_sample(group: pd.DataFrame, event: str) -> Sample:
    """Epochs to `event` where a run reached it, else the epochs it ran (censored there)."""
    _, epochs, _ = event_columns(event)
    observed = group[epochs].notna()
    return Sample(
        group[epochs].where(observed, group["epochs"]).astype(float).tolist(), observed.tolist(), group["seed"].tolist()
    )


def varied_groups(runs: pd.DataFrame, by: str) -> list:
    """(method, loss, condition) groups that ran at two or more values of `by`."""
    return [
        (k, g)
        for k, g in with_conditions(runs).groupby(["method", "loss", "condition"], sort=True)
        if g[by].nunique() >= 2
    ]


def search_table(uri: str, experiments: list[str]) -> Table | None:
    store = TrackingStore(uri)
    table = Table("search_best", "Optuna: best setting per method", ["sweep", "method", "setting", "value"])
    for name in experiments:
        for key, value in sorted(store.best_tags(experiment_name(name)).items()):
            sweep, method, setting = TrackingStore.best_tag_parts(key)
            table.rows.append([sweep, method, setting, f"{float(value):.4g}"])
    return table if table.rows else None


def geometry_table(uri: str, runs: pd.DataFrame) -> Table | None:
    """The task's curves (`Presentation.tabled`; MNIST: geometry, as in the paper's Table 2; polynomial: the NTK's
    diagnostics) at memorisation and at grokking, median over seeds; one row per λ where a method ran at several,
    per variant and per task setting a sweep varied."""
    store = TrackingStore(uri)
    presented, varied = presentation(runs), varied_task_settings(runs)
    headers = ["Method", "loss", *map(setting_name, varied)] + [
        f"{m} @{event}" for m in presented.tabled for event in ("mem", "grok")
    ]
    table = Table(
        presented.name, f"{presented.title} at memorisation (@mem) and grokking (@grok), median over seeds", headers
    )
    for setting in rows(runs, varied):
        values: dict[str, list[float]] = {}
        for _, run in setting.runs.iterrows():
            for metric in presented.tabled:
                history = store.curve(run["run_id"], metric)
                for event, step in (("mem", run["steps_to_memorise"]), ("grok", run["steps_to_grok"])):
                    if pd.notna(step) and int(step) in history:
                        values.setdefault(f"{metric}@{event}", []).append(history[int(step)])
        row = [setting.label, *map(shown, setting.by)]
        for metric in presented.tabled:
            for event in ("mem", "grok"):
                found = values.get(f"{metric}@{event}")
                row.append(fmt(float(pd.Series(found).median())) if found else "—")
        table.rows.append(row)
    return table if table.rows else None


# ---- command line ----------------------------------------------------------------------------------------------------


def build_tables(uri: str, runs: pd.DataFrame, experiments: list[str], max_epochs: int | None = None) -> list[Table]:
    if max_epochs is not None:
        runs = at_budget(uri, runs, max_epochs)
    tables = table1(runs) + [t for event in further_events(runs) for t in table1(runs, event)]
    events = events_table(runs)
    tables += [events] if events is not None else []
    for table in tables:
        table.notes.append(budget_note(runs, max_epochs))
    for by, title, name in (
        ("lam", "Sensitivity to λ (the method's strength)", "lambda"),
        ("init_scale", "Sensitivity to the initialisation scale α", "init_scale"),
    ):
        table = sensitivity(runs, by, title, name)
        if table is not None:
            tables.append(table)
    groups = rows(runs, varied_task_settings(runs))
    for extra in (search_table(uri, experiments), geometry_table(uri, runs), gap_table(uri, runs, groups)):
        if extra is not None:
            tables.append(extra)
    return (tables + [trials_table(runs)]) if tables else []


RESULTS = Path("results")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m analysis.tables", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow store, or the path of a SQLite one (default MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)",
    )
    parser.add_argument(
        "--experiment",
        default=None,
        help="sweep file name(s), comma-separated (default mnist, else the store's only grokbench "
        "experiment; e.g. mnist,mnist_lambda)",
    )
    parser.add_argument("--sweep", default=None, help="only this sweep id (printed when a sweep starts)")
    parser.add_argument(
        "--out",
        default=None,
        help="directory for the tables (default results/ for mnist, whose "
        "tables are committed there; results/<experiment> for another "
        "experiment, results/<sweep id> with --sweep)",
    )
    add_format_argument(parser)
    parser.add_argument("--figures", action="store_true", help="also write the figures (PNG and PDF)")
    parser.add_argument(
        "--max-epochs",
        type=_positive_int,
        default=None,
        help="apply this budget: a trial that grokked or ran past it counts as censored at it "
        "(default: each trial's own)",
    )
    parser.add_argument(
        "--no-log",
        action="store_true",
        help="do not log the tables and figures to MLflow as an analysis run of the first experiment read",
    )
    return parser.parse_args(argv)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of epochs, got {text!r}")
    return value


def default_out(experiments: list[str], sweep: str | None) -> Path:
    """results/ holds grokbench/mnist's committed tables: any other selection's go beside them, never over them."""
    if sweep:
        return RESULTS / sweep
    if experiments == [DEFAULT_EXPERIMENT]:
        return RESULTS
    return RESULTS / "+".join(name.removeprefix(EXPERIMENT_PREFIX) for name in experiments)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_command("analysis.tables", args.format, lambda formats: analyse(args, formats))


def analyse(args: argparse.Namespace, formats: list[str]) -> list[Path]:
    experiments = [e.strip() for e in args.experiment.split(",")] if args.experiment else None
    uri = tracking_uri(args.tracking_uri)
    runs, read = load_runs(uri, experiments, args.sweep)
    note = progress_note(runs)
    if note:
        print(f"note: {note}")
    tables = build_tables(uri, runs, read, args.max_epochs)
    if not tables:
        raise AnalysisError("no trial has finished yet; wait for the sweep (or check --sweep)")
    out = Path(args.out) if args.out else default_out(read, args.sweep)
    written = show_and_write(tables, out, formats)
    if args.figures:
        from analysis.figures import write_figures

        written += write_figures(uri, runs, out)
    print(f"wrote {len(written)} files to {out.resolve()}")
    if not args.no_log:
        log_analysis_run("analysis.tables", uri, read, args.sweep, written)
    return written


if __name__ == "__main__":
    sys.exit(main())
