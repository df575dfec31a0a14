"""`python -m analysis.tables`: GrokAlign's Table 1 (and the sensitivity, search and geometry tables) from MLflow.

Steps are optimiser updates; times are training seconds (updates only). A trial that never grokked is censored
at its budget: cells holding one show a Kaplan–Meier median, or "> t" where the KM curve never falls to 1/2.
Speed-up = baseline ÷ method (> 1 is faster): a ratio of geometric means with a Welch test on log values where
every trial grokked, else a log-normal AFT time ratio with a log-rank test, or a bound (≥ / ≤) where a row has
too few grokked trials to fit; each table's footnote and CSV columns say which (analysis/stats.py).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from analysis.delay import delay_table
from analysis.detail_tables import events_table, geometry_table, search_table, sensitivity, trials_table
from analysis.figures import write_figures
from analysis.gap import gap_table
from analysis.groups import row_groups
from analysis.movement import movement_table
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
from analysis.phase import phase_end_table, phase_table
from analysis.reference import reference_table
from analysis.runs import (
    AnalysisError,
    at_budget,
    budget_note,
    further_events,
    load_runs,
    progress_note,
    row_settings,
)
from analysis.table1 import table1
from grokbench.cli import Parser
from grokbench.sweep.keys import EXPERIMENT_PREFIX
from grokbench.sweep.uri import tracking_uri


def build_tables(uri: str, runs: pd.DataFrame, experiments: list[str], max_epochs: int | None = None) -> list[Table]:
    if max_epochs is not None:
        runs = at_budget(uri, runs, max_epochs)
    tables = [t for event in ("grok", *further_events(runs)) for t in table1(runs, event, experiments)]
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
    groups = row_groups(runs, row_settings(runs))
    extras = (
        search_table(uri, experiments),
        geometry_table(uri, runs),
        gap_table(uri, runs, groups),
        reference_table(uri, runs, groups),
        movement_table(uri, runs),
        phase_table(runs),
        phase_end_table(runs),
        delay_table(runs),
    )
    for extra in extras:
        if extra is not None:
            tables.append(extra)
    return (tables + [trials_table(runs)]) if tables else []


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = Parser(prog="python -m analysis.tables", description=__doc__.split("\n\n")[0])
    add_tracking_argument(parser)
    parser.add_argument(
        "--experiment",
        default=None,
        help="sweep file name(s), comma-separated (default mnist, else the store's most recently run grokbench "
        "experiment; e.g. mnist,mnist_lambda)",
    )
    parser.add_argument("--sweep", default=None, help="only this sweep id (printed when a sweep starts)")
    add_output_arguments(parser, "<experiment> (<sweep id> with --sweep)")
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


def selection_name(experiments: list[str], sweep: str | None) -> str:
    """`mnist`, `mnist+mnist_lambda`, or the sweep id: the folder a selection's tables go to."""
    return sweep or "+".join(name.removeprefix(EXPERIMENT_PREFIX) for name in experiments)


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
    out = output_dir(args, selection_name(read, args.sweep))
    written = show_and_write(tables, out, formats)
    if args.figures:
        written += write_figures(uri, runs, out)
    print(f"wrote {len(written)} files to {out.resolve()}")
    if not args.no_log:
        log_analysis_run(uri, read, args.sweep, written)
    return written
