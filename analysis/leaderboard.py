"""`python -m analysis.leaderboard`: a benchmark's leaderboard from MLflow, the one `grokbench benchmark` ends with.

Reads the benchmark's parent run (the suite file as run, its stamp, the cost measurement) and its trial runs, and
writes: leaderboard.md/.tex/.csv (each arm's score B per ruleset and time measure, over the tuning studies, beside
its confirmation speed-up against the baseline), performance_profiles.png, confirmed_<workload>.md/.tex/.csv (the
winning settings rerun on fresh seeds), tuned_settings.md/.csv (what each arm's tuning landed on beside its
published default), stopper.md/.csv (the tuning updates the r_max stopper saved) and verdicts.md/.csv (per
workload, which arms beat the tuned baseline, which only the paper ruleset's, and whether they remove the grokking
delay or shorten it). Without --no-log the files
replace the parent run's copy, in its artifact folder leaderboard/. A rebuild reads neither git nor this machine:
from the same store it writes the same bytes.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from analysis.leaderboard_confirmed import confirmed_table
from analysis.leaderboard_data import Benchmark, read_benchmark
from analysis.leaderboard_figure import profiles_figure
from analysis.leaderboard_stopper import stopper_table
from analysis.leaderboard_tables import leaderboard, scores, tuned_settings
from analysis.leaderboard_verdicts import verdicts_table
from analysis.output import (
    FORMATS,
    Table,
    add_output_arguments,
    add_tracking_argument,
    output_dir,
    run_command,
    to_markdown,
    write,
)
from grokbench.sweep.keys import EXPERIMENT_PREFIX
from grokbench.sweep.mlflow_store import TrackingStore, store_errors
from grokbench.sweep.uri import tracking_uri

FOLDER = "leaderboard"  # the parent run's copy
FLOAT_FORMAT = "%.6g"
log = logging.getLogger(f"grokbench.{__name__}")


def build_leaderboard(
    uri: str, experiment: str | None, benchmark_id: str | None, out: Path, log_to_parent: bool = True
) -> list[Path]:
    """Write the benchmark's leaderboard files to `out` and, with `log_to_parent`, log them to its parent run
    (replacing the copy there). `experiment`: the suite's name (`smoke`) or its experiment (`benchmark_smoke`,
    `grokbench/benchmark_smoke`); None: the store's only benchmark experiment. `benchmark_id`: None for the newest
    benchmark of the suite. Returns the written paths, sorted. Raises AnalysisError (a SweepError for a store it
    cannot reach) with one line saying what is wrong, before anything is written."""
    _, written = write_leaderboard(uri, read_benchmark(uri, experiment, benchmark_id), out, log_to_parent)
    return written


def write_leaderboard(uri: str, bench: Benchmark, out: Path, log_to_parent: bool) -> tuple[list[Table], list[Path]]:
    """The tables (the leaderboard first) and the paths written."""
    board = scores(bench)
    shown, frame = leaderboard(bench, board)
    tables = [shown, *(confirmed_table(bench, w) for w in bench.suite.workloads), tuned_settings(bench)]
    tables += [stopper_table(bench), verdicts_table(bench)]
    out.mkdir(parents=True, exist_ok=True)
    written = write_tables(tables, frame, out)
    written.append(profiles_figure(board, bench.suite.r_max, out / "performance_profiles.png"))
    if log_to_parent:
        log_files(uri, bench, written)
    return tables, sorted(written)


def write_tables(tables: list[Table], leaderboard_csv, out: Path) -> list[Path]:
    """Markdown and LaTeX of each (the tuned settings, the stopper's savings and the verdicts: Markdown and CSV),
    the CSVs with fixed float digits."""
    board, *confirmed, tuned, stopper, verdicts = tables
    written = write([board, *confirmed], out, ("md", "tex")) + write([tuned, stopper, verdicts], out, ("md",))
    leaderboard_csv.to_csv(out / "leaderboard.csv", index=False, float_format=FLOAT_FORMAT, lineterminator="\n")
    written.append(out / "leaderboard.csv")
    written += write([*confirmed, tuned, stopper, verdicts], out, ("csv",))
    return written


def log_files(uri: str, bench: Benchmark, files: list[Path]) -> None:
    """The files as artifacts of the benchmark's parent run, in leaderboard/ (the same paths each time: a rebuild
    replaces them); a store that refuses gets a warning, the files are written already."""
    store = TrackingStore(uri)
    try:
        for path in sorted(files):
            store.log_file(bench.parent_run_id, path, FOLDER)
    except store_errors() as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        log.warning("the leaderboard is written, but %s refused it on the parent run (%s)", uri, reason)
        return
    log.info("logged them to benchmark %s's parent run, in %s/ (--no-log skips this)", bench.benchmark_id, FOLDER)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m analysis.leaderboard", description=__doc__.split("\n\n")[0])
    add_tracking_argument(parser)
    parser.add_argument(
        "--experiment",
        default=None,
        help="the suite (smoke) or its experiment (benchmark_smoke); default: the store's only benchmark experiment",
    )
    parser.add_argument("--benchmark-id", default=None, help="this benchmark of the suite (default: the newest)")
    add_output_arguments(parser, "benchmark_<suite>")
    parser.add_argument("--no-log", action="store_true", help="do not log the files to the benchmark's parent run")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_command("analysis.leaderboard", ",".join(FORMATS), lambda _: command(args))


def command(args: argparse.Namespace) -> list[Path]:
    uri = tracking_uri(args.tracking_uri)
    bench = read_benchmark(uri, args.experiment, args.benchmark_id)
    out = output_dir(args, bench.suite.experiment.removeprefix(EXPERIMENT_PREFIX))
    tables, written = write_leaderboard(uri, bench, out, not args.no_log)
    print(to_markdown(tables[0]))
    print(f"wrote {len(written)} files to {out.resolve()}")
    return written


if __name__ == "__main__":
    raise SystemExit(main())
