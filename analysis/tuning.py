"""`python -m analysis.tuning`: the tuned comparison — each method tuned by Optuna (sweeps/mnist_tune.yaml), then
confirmed at its tuned setting on fresh seeds (sweeps/mnist_tuned.yaml) as "Table 1, tuned".

From the tuning's runs: every tuning trial with its objective and the best so far (tuning_trials.*), the tuning
history as a figure (tuning_history.png/.pdf), the search's best settings (search_best.*), and those settings
printed as a sweep file's methods: section to paste into the confirmation sweep. From the confirmation's runs,
once it has run: table1_tuned.* — Table 1 with each method at its tuned setting against the tuned baseline, each
row's label naming its tuned values; runs at other settings, or at the tuning seed, are left out and counted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.detail_tables import search_table
from analysis.groups import LOSS_NAMES, METHOD_NAMES, method_rank
from analysis.output import (
    Table,
    add_format_argument,
    add_output_arguments,
    add_tracking_argument,
    log_analysis_run,
    output_dir,
    run_command,
    show_and_write,
)
from analysis.runs import AnalysisError, budget_note, load_runs
from analysis.table1 import table1
from grokbench.sweep.keys import experiment_name
from grokbench.sweep.mlflow_store import TrackingStore
from grokbench.sweep.uri import tracking_uri

TUNABLE = {"weight_decay": "wd", "lam": "λ", "lr": "lr", "init_scale": "α"}  # searchable settings the runs hold
MATCH_RTOL = 1e-3  # a pasted value is rounded to 4 significant figures (report.TUNED_DIGITS)
HISTORY_COLUMNS = [
    "method",
    "trial",
    "run_id",
    "status",
    "seed",
    "max_epochs",
    *TUNABLE,
    "variant",
    "objective",
    "best",
]


# ---- the tuning ------------------------------------------------------------------------------------------------------


def objective(runs: pd.DataFrame) -> pd.Series:
    """What the search minimised (grokbench.sweep.trainable.objective), recomputed from each run's summary: seconds
    to grok, else the training seconds extrapolated to the whole budget (a censored run's own, as it ran it all);
    NaN for a run without an outcome."""
    extrapolated = runs["train_time_s"] * runs["max_epochs"] / runs["epochs"].clip(lower=1)
    value = runs["time_to_grok_s"].where(runs["status"] == "grokked", extrapolated)
    return value.where(runs["status"].isin(["grokked", "censored", "diverged"]))


def newest_sweep(runs: pd.DataFrame) -> str:
    """The sweep id of the run started last: the tuning a confirmation follows, where an experiment holds several."""
    return str(runs.sort_values("start_time")["sweep_id"].iloc[-1])


def history(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per tuning trial: its method, its number within the method (the order the trials started, which is
    the order Optuna proposed them), its settings, its objective and the best objective so far (a trial without an
    outcome keeps its number and carries the best forward)."""
    frames = []
    for method in sorted(set(runs["method"]), key=method_rank):
        trials = runs[runs["method"] == method].sort_values("start_time", kind="stable").copy()
        trials["trial"] = np.arange(1, len(trials) + 1)
        trials["objective"] = objective(trials)
        trials["best"] = trials["objective"].cummin().ffill()
        frames.append(trials)
    return pd.concat(frames, ignore_index=True)[HISTORY_COLUMNS] if frames else pd.DataFrame(columns=HISTORY_COLUMNS)


def searched(hist: pd.DataFrame) -> dict[str, list[str]]:
    """Per method, the settings its trials ran at more than one value of: what the search tuned."""
    return {
        method: [name for name in TUNABLE if group[name].nunique() > 1]
        for method, group in hist.groupby("method", sort=False)
    }


def best_trials(hist: pd.DataFrame) -> pd.DataFrame:
    """Each method's trial with the least objective (the first of equals), as the sweep's report picks it."""
    done = hist.dropna(subset=["objective"])
    return done.loc[done.groupby("method", sort=False)["objective"].idxmin()].reset_index(drop=True)


def tuned_settings(uri: str, hist: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Method → its tuned setting as a confirmation sweep sets it (the searched values rounded, and its own
    settings off their defaults), read from its best trial's stored settings."""
    from grokbench.resolve import stored_config
    from grokbench.sweep.report import tuned_setting

    store, tuned = TrackingStore(uri), {}
    names = searched(hist)
    for _, best in best_trials(hist).iterrows():
        params = store.get_run(best["run_id"]).data.params
        tuned[best["method"]] = tuned_setting(stored_config(params), names[best["method"]])
    return tuned


def trials_table(hist: pd.DataFrame) -> Table:
    table = Table(
        "tuning_trials",
        "Tuning: every trial, with the best objective so far",
        ["method", "trial", "setting", "status", "objective (s)", "best so far (s)"],
        printed=False,
    )
    names = searched(hist)
    for _, r in hist.iterrows():
        table.rows.append(
            [
                METHOD_NAMES.get(r["method"], r["method"]),
                str(r["trial"]),
                setting_label(r, names[r["method"]]),
                r["status"],
                _seconds(r["objective"]),
                _seconds(r["best"]),
            ]
        )
    table.notes.append(
        "objective: seconds to grok; a trial that did not grok counts at its budget's seconds (its "
        "training seconds extrapolated to the budget where it diverged); trials numbered in the order "
        "they started"
    )
    return table


def setting_label(row: pd.Series | dict, names: Sequence[str]) -> str:
    """The searched values as a row label shows them, e.g. "wd=0.2154, λ=0.003", then the method's own settings
    where they are off their defaults."""
    parts = [f"{TUNABLE[name]}={row[name]:.4g}" for name in names]
    return ", ".join(parts + ([row["variant"]] if row.get("variant") else []))


def _seconds(value: float) -> str:
    return "—" if pd.isna(value) else f"{value:,.1f}"


def history_figure(hist: pd.DataFrame, out: Path) -> list[Path]:
    """Best objective so far against trial number, one line per method; each trial's own objective as a point,
    ▲ where it did not grok (counted at its budget's seconds), × where it diverged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis.plotting import COLOURS, save

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, trials in hist.groupby("method", sort=False):
        colour = COLOURS.get(method)
        ax.step(
            trials["trial"],
            trials["best"],
            where="post",
            color=colour,
            label=f"{METHOD_NAMES.get(method, method)}: best so far",
        )
        for status, style in (
            ("grokked", {"marker": "o", "color": colour}),
            ("censored", {"marker": "^", "facecolors": "none", "edgecolors": colour}),
            ("diverged", {"marker": "x", "color": colour}),
        ):
            shown = trials[trials["status"] == status]
            ax.scatter(shown["trial"], shown["objective"], alpha=0.7, s=28, **style)
    ax.set(
        yscale="log",
        xlabel="trial (in the order started)",
        ylabel="seconds to grok",
        title="Tuning history: ● grokked, ▲ not grokked (at its budget's seconds), × diverged",
    )
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    out.mkdir(parents=True, exist_ok=True)
    return save(fig, out, "tuning_history")


# ---- the confirmation ----------------------------------------------------------------------------------------------


def matches(runs: pd.DataFrame, tuned: pd.Series | dict) -> pd.Series:
    """Which runs ran at a tuned trial's setting: each of the settings a search may tune within MATCH_RTOL of the
    trial's (searched or not), and the same own settings."""
    hit = runs["variant"].fillna("") == (tuned["variant"] or "")
    for name in TUNABLE:
        hit &= np.isclose(runs[name], tuned[name], rtol=MATCH_RTOL, atol=0, equal_nan=True)
    return hit


def tuned_runs(uri: str, experiments: list[str], sweep: str | None = None) -> pd.DataFrame:
    """The runs, their variants without the settings a search tunes (MNIST names its weight decay in a trial's
    variant): here those are the tuned values, named by `setting_label` and matched as numbers within MATCH_RTOL."""
    runs, _ = load_runs(uri, experiments, sweep)

    def untuned(variant: str) -> str:
        return ", ".join(p for p in variant.split(", ") if p and p.split("=")[0] not in TUNABLE)

    return runs.assign(variant=runs["variant"].fillna("").map(untuned))


def select_tuned(runs: pd.DataFrame, hist: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The confirmation's runs at each method's tuned setting, each labelled with it (its `variant`, which names
    the table row), and notes on what was left out. A method the confirmation ran only at other settings (the
    placeholders, or values pasted from another tuning) is an error: its row would not be its tuned one."""
    names, tuning_seeds = searched(hist), set(hist["seed"].dropna())
    kept, notes = [], []
    for _, best in best_trials(hist).iterrows():
        method = best["method"]
        own = runs[runs["method"] == method]
        hit = own[matches(own, best)]
        if own.empty:
            notes.append(f"{METHOD_NAMES.get(method, method)} was tuned but has no confirmation runs")
            continue
        if hit.empty:
            ran = "; ".join(sorted({setting_label(r, list(TUNABLE)) for _, r in own.iterrows()}))
            raise AnalysisError(
                f"the confirmation ran {method} at {ran}, not at its tuned setting "
                f"{setting_label(best, list(TUNABLE))}: paste the tuned settings (printed by "
                "python -m analysis.tuning) into the confirmation sweep file and run it"
            )
        fresh = hit[~hit["seed"].isin(tuning_seeds)]
        if len(fresh) < len(hit):
            notes.append(
                f"{METHOD_NAMES.get(method, method)}: {len(hit) - len(fresh)} run(s) at the tuning seed "
                f"({', '.join(f'{s:g}' for s in sorted(tuning_seeds))}) left out"
            )
        if len(hit) < len(own):
            notes.append(f"{METHOD_NAMES.get(method, method)}: {len(own) - len(hit)} run(s) at other settings left out")
        kept.append(fresh.assign(variant=setting_label(best, names[method])))
    untuned = sorted(set(runs["method"]) - set(hist["method"]), key=method_rank)
    if untuned:
        notes.append(f"not tuned, left out: {', '.join(untuned)}")
    return (pd.concat(kept, ignore_index=True) if kept else runs.iloc[:0]), notes


def tuned_tables(runs: pd.DataFrame, hist: pd.DataFrame, tuning: str, sweep: str) -> list[Table]:
    """Table 1 of the confirmation's runs at the tuned settings, one per loss (table1_tuned; table1_tuned_<loss>
    where there are several), each row labelled with its tuned setting."""
    selected, left_out = select_tuned(runs, hist)
    if selected.empty:
        return []
    tables = table1(selected)
    counts = hist.groupby("method").size()
    per_method = f"{counts.min()}" if counts.min() == counts.max() else f"{counts.min()}–{counts.max()}"
    seeds = ", ".join(f"{s:g}" for s in sorted(selected["seed"].unique()))
    for table in tables:
        loss = table.name.removeprefix("table1_")
        table.name = "table1_tuned" if len(tables) == 1 else f"table1_tuned_{loss}"
        table.title = f"Table 1, tuned — {LOSS_NAMES.get(loss, loss)}"
        table.notes += [
            f"each method at the setting Optuna picked for it in sweep {sweep} ({experiment_name(tuning)}: "
            f"{per_method} trials a method on seed {', '.join(f'{s:g}' for s in sorted(set(hist['seed'])))}, "
            f"budget {int(hist['max_epochs'].max()):,} epochs; objective: seconds "
            "to grok, a trial that did not grok at its budget's seconds); the baseline row is the tuned baseline, "
            f"at its own weight decay; confirmed on seeds {seeds}",
            budget_note(selected, None),
            *left_out,
        ]
    return tables


# ---- command line ----------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m analysis.tuning", description=__doc__.split("\n\n")[0])
    add_tracking_argument(parser)
    parser.add_argument("--tuning", default="mnist_tune", help="the tuning sweep's name (default mnist_tune)")
    parser.add_argument("--sweep", default=None, help="the tuning sweep id (default: the newest in --tuning)")
    parser.add_argument("--confirm", default="mnist_tuned", help="the confirmation sweep's name (default mnist_tuned)")
    add_output_arguments(parser, "<tuning>")
    add_format_argument(parser)
    parser.add_argument("--no-log", action="store_true", help="do not log the files to MLflow as an analysis run")
    return parser.parse_args(argv)


def confirmation_runs(uri: str, confirm: str) -> pd.DataFrame | None:
    """The confirmation's runs; None where it has not run yet."""
    if experiment_name(confirm) not in TrackingStore(uri).grokbench_experiments():
        return None
    runs = tuned_runs(uri, [confirm])
    return runs[runs["status"] != "running"]


def analyse(args: argparse.Namespace, formats: list[str]) -> list[Path]:
    from grokbench.sweep.report import methods_block

    uri = tracking_uri(args.tracking_uri)
    tuning_runs = tuned_runs(uri, [args.tuning], args.sweep)
    sweep = args.sweep or newest_sweep(tuning_runs)
    hist = history(tuning_runs[tuning_runs["sweep_id"] == sweep])
    if hist["objective"].isna().all():
        raise AnalysisError(f"no trial of sweep {sweep} has finished yet; wait for it, or resume it")
    print(methods_block(tuned_settings(uri, hist), f"tuned by sweep {sweep} ({args.tuning})"), end="\n\n")
    tables = [trials_table(hist)]
    tables += [t for t in [search_table(uri, [args.tuning])] if t is not None]
    confirmed = confirmation_runs(uri, args.confirm)
    if confirmed is None:
        print(
            f"no confirmation runs yet (no experiment {experiment_name(args.confirm)}): paste the block above "
            f"into sweeps/{args.confirm}.yaml, run grokbench sweep {args.confirm}, then this again\n"
        )
    else:
        tables = tuned_tables(confirmed, hist, args.tuning, sweep) + tables
    out = output_dir(args, args.tuning)
    written = show_and_write(tables, out, formats) + history_figure(hist, out)
    print(f"wrote {len(written)} files to {out.resolve()}")
    if not args.no_log:
        read = [args.confirm] if confirmed is not None else [args.tuning]
        log_analysis_run(uri, [experiment_name(n) for n in read], None, written)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_command("analysis.tuning", args.format, lambda formats: analyse(args, formats))


if __name__ == "__main__":
    sys.exit(main())
