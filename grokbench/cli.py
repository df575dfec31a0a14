"""The `grokbench` command line: `run` one trial, `bench` the methods' update cost, `sweep` many trials,
`benchmark` a suite of workloads and arms."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, NoReturn

from grokbench.config import SHARED, ConfigError, TrialConfig
from grokbench.resolve import config_from, foreign_setting
from grokbench.settings import help_of
from grokbench.sweep.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, SweepError


def _add_setting_flags(parser: argparse.ArgumentParser, task) -> list[str]:
    """One --flag per setting of the task, of the shared settings and of every method (a method's are refused
    with a clear message unless --method names it); values stay strings here and are checked by the config.
    Returns the settings' names."""
    from grokbench.methods import METHODS

    shared = [f for f in fields(TrialConfig) if f.name in SHARED and f.name != "task"]
    groups = [("settings every trial shares", shared), (f"{task.name} settings", fields(task.Settings))]
    groups += [(f"{m.name} settings (with --method {m.name})", fields(m.Settings)) for m in METHODS.values()]
    names: list[str] = []
    for title, settings in groups:
        if not settings:
            continue
        names += [f.name for f in settings]
        group = parser.add_argument_group(title)
        for f in settings:
            default = "" if f.default in (None, dataclasses.MISSING) else f" (default {f.default})"
            help_text = help_of(f) + (default if f.name in task.Settings.names() else "")
            if f.name == "preset" and task.presets:
                help_text += f": {', '.join(task.presets)}"
            if f.name == "method":
                help_text += "".join(f"; {m.name}: {m.description}" for m in METHODS.values() if m.description)
            group.add_argument(
                "--" + f.name.replace("_", "-"), dest=f.name, default=None, metavar=f.name.upper(), help=help_text
            )
    return names


def _config_from_args(args: argparse.Namespace) -> TrialConfig:
    names = vars(args).get("setting_names", ())
    given = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    return config_from({**given, "task": args.task})


def _unknown_flag_error(args: argparse.Namespace, unknown: list[str]) -> str:
    """What to say of flags `run` does not know: whose setting each is, if any task or method has it."""
    flag = next((token for token in unknown if token.startswith("-")), unknown[0])
    name = flag.lstrip("-").split("=")[0].replace("-", "_")
    if getattr(args, "command", None) != "run":
        return f"unrecognized arguments: {' '.join(unknown)}"
    error = foreign_setting(name, args.task, args.method or "baseline")
    if "unknown setting" in str(error):
        return f"{flag.split('=')[0]}: no such setting of {args.task} (see grokbench run {args.task} --help)"
    return f"--{name.replace('_', '-')}: {error.message}"


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, allow_nan=False))


def cmd_run(args: argparse.Namespace) -> int:
    from grokbench.progress import Progress, format_summary
    from grokbench.train import Trial

    trial = Trial(_config_from_args(args))
    progress = Progress()
    try:
        summary = trial.run(callback=progress)
    finally:
        progress.close()
    print(format_summary(summary))
    if args.json:
        _print_json(summary)
    return 0


def _progress_line(message: str) -> None:
    """One line redrawn in place on a terminal; plain lines in a log, which escape codes would garble."""
    if sys.stderr.isatty():
        print(f"\r{message}\033[K", end="", file=sys.stderr, flush=True)
    else:
        print(message, file=sys.stderr, flush=True)


def _end_progress_line() -> None:
    if sys.stderr.isatty():
        print(file=sys.stderr)


def cmd_bench(args: argparse.Namespace) -> int:
    from grokbench.bench import bench_json, format_bench, run_bench

    if args.threads is not None and args.threads < 1:
        raise ConfigError("threads", f"must be >= 1, got {args.threads}")
    report = run_bench(
        threads=args.threads,
        rounds=args.rounds,
        device=args.device,
        data_dir=args.data_dir,
        task=args.task,
        preset=args.preset,
        progress=_progress_line,
    )
    _end_progress_line()
    print(format_bench(report))
    if args.json:
        _print_json(bench_json(report))
    return 0


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _name_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _setting_values(text: str) -> tuple[str, list[str]]:
    name, sep, values = text.partition("=")
    if not sep or not name.strip() or not _name_list(values):
        raise argparse.ArgumentTypeError(
            f"expected SETTING=VALUE[,VALUE...], e.g. freeze_embeddings=false; got {text!r}"
        )
    return name.strip(), _name_list(values)


def _merged(pairs: list[tuple[str, list[str]]] | None) -> dict[str, list[str]] | None:
    """Repeated --only flags: a setting named twice keeps the values of both (`--only seed=0 --only seed=1`)."""
    merged: dict[str, list[str]] = {}
    for name, values in pairs or ():
        merged.setdefault(name, []).extend(values)
    return merged or None


SWEEP_OVERRIDES = (
    "smoke",
    "seeds",
    "max_epochs",
    "methods",
    "num_samples",
    "only",
    "cpus_per_trial",
    "gpus_per_trial",
    "max_concurrent",
)


def cmd_sweep(args: argparse.Namespace) -> int:
    from grokbench.sweep.driver import SweepOptions, run_sweep
    from grokbench.sweep.plan import MEASURE_EPOCHS
    from grokbench.sweep.spec import build_sweep

    given = {k: getattr(args, k) for k in SWEEP_OVERRIDES}
    given["only"] = _merged(args.only)
    overrides = {k: v for k, v in given.items() if v is not None and v is not False}  # 0 is a value, not "unset"
    changed = [f"--{k.replace('_', '-')}" for k in overrides if k != "smoke"]
    if args.resume and changed:
        raise SweepError(
            f"--resume continues a sweep with the flags it was started with (from its plan), so "
            f"{', '.join(changed)} would be ignored; drop it, or start a new sweep without --resume "
            "(a larger --max-epochs continues the censored trials of the old one)"
        )
    if args.measure_epochs is not None and (args.measure_epochs < 0 or not args.dry_run):
        raise SweepError(f"--measure-epochs: a --dry-run's epochs to time, 0 or more; got {args.measure_epochs}")
    spec = build_sweep(args.sweep, overrides)
    options = SweepOptions(
        address=args.address,
        tracking_uri=args.tracking_uri,
        storage=args.storage,
        resume=args.resume,
        sweep_id=args.sweep_id,
        dry_run=args.dry_run,
        measure_epochs=_or(args.measure_epochs, MEASURE_EPOCHS),
        rerun=args.rerun,
        overrides=overrides,
    )
    return run_sweep(spec, options)


def cmd_benchmark(args: argparse.Namespace) -> int:
    from grokbench.benchmark.driver import MEASURE_UPDATES, BenchmarkOptions, run_benchmark
    from grokbench.benchmark.plan import DRY_RUN_UPDATES, dry_run
    from grokbench.benchmark.suite import load_suite

    if args.measure_updates is not None and args.measure_updates < (0 if args.dry_run else 1):
        least = "0 (time nothing) or more" if args.dry_run else "at least 1 (the run records each arm's cost)"
        raise SweepError(f"--measure-updates: must be {least}, got {args.measure_updates}")
    suite = load_suite(args.suite).with_resources(
        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial, max_concurrent=args.max_concurrent
    )
    if args.dry_run:
        return dry_run(suite, measure_updates=_or(args.measure_updates, DRY_RUN_UPDATES))
    options = BenchmarkOptions(
        address=args.address,
        tracking_uri=args.tracking_uri,
        storage=args.storage,
        resume=args.resume,
        benchmark_id=args.benchmark_id,
        measure_updates=_or(args.measure_updates, MEASURE_UPDATES),
    )
    code, started = run_benchmark(suite, options)
    if code == 0 and started is not None:
        _leaderboard(suite.experiment, started, args.out)
    return code


def _or(value, default):
    return default if value is None else value


def _leaderboard(experiment: str, started, out: str | None) -> None:
    """The leaderboard the benchmark ends with, logged to its parent run (the command line is the one edge where
    grokbench calls the analysis: `python -m analysis.leaderboard` rebuilds it the same way)."""
    from analysis.leaderboard import build_leaderboard
    from analysis.output import build_dir
    from analysis.runs import AnalysisError
    from grokbench.sweep.keys import EXPERIMENT_PREFIX

    name = experiment.removeprefix(EXPERIMENT_PREFIX)
    out = Path(out) if out else build_dir(name)
    try:
        paths = build_leaderboard(started.uri, experiment, started.benchmark_id, out, log_to_parent=True)
    except AnalysisError as err:  # its runs are all there; say why the leaderboard could not be built
        why = f"benchmark {started.benchmark_id} ran, but its leaderboard could not be built: {err}"
        raise SweepError(why) from None
    print(f"leaderboard: {out / 'leaderboard.md'} ({len(paths)} files, also on the benchmark's parent run)")
    print(f"rebuild: python -m analysis.leaderboard --tracking-uri {started.uri} --experiment {name}")


def cmd_bench_sweep(args: argparse.Namespace) -> int:
    from grokbench.sweep.overhead import measure_overhead

    config = {
        "task": args.task,
        "method": args.method,
        "loss": args.loss,
        "max_epochs": args.max_epochs,
        "threads": args.threads,
    }
    config_from(config)  # bad values fail here, before Ray starts
    report = measure_overhead(config, rounds=args.rounds, progress=lambda m: print(m, file=sys.stderr))
    print(
        f"trial wall clock, median of {report['rounds']} alternating rounds: grokbench run "
        f"{report['standalone_wall_s']:.1f} s, inside a sweep {report['in_sweep_wall_s']:.1f} s "
        f"({100 * (report['overhead_ratio'] - 1):+.1f}%); sweep start-up and teardown "
        f"{report['sweep_startup_s']:.1f} s"
    )
    if args.json:
        _print_json(report)
    return 0


def cmd_bench_nodes(args: argparse.Namespace) -> int:
    from grokbench.sweep.overhead import measure_distribution

    report = measure_distribution(trials=args.trials, progress=lambda m: print(m, file=sys.stderr))
    for layout, r in report.items():
        print(
            f"{layout:<10} sweep wall {r['sweep_wall_s']:.1f} s on {r['nodes_used']} node(s); "
            f"per-trial scheduling and logging ≈{r['per_trial_overhead_s']:.1f} s"
        )
    if args.json:
        _print_json(report)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from grokbench.sweep.cluster import connect_ray
    from grokbench.sweep.doctor import check_cluster, format_findings
    from grokbench.sweep.plan import example_trial
    from grokbench.sweep.spec import load_sweep
    from grokbench.sweep.storage import SweepStorage

    spec = load_sweep(args.sweep)
    cpus = args.cpus_per_trial if args.cpus_per_trial is not None else spec.resources.cpus_per_trial
    gpus = args.gpus_per_trial if args.gpus_per_trial is not None else spec.resources.gpus_per_trial
    uri = _reachable_tracking_uri(args, login=False)  # a refused login is one of the findings, not an exit
    connect_ray(args.address, spec)
    findings = check_cluster(uri, SweepStorage(args.storage).root, example_trial(spec).to_dict(), cpus, gpus)
    print(format_findings(findings))
    failed = sum(not f.ok for f in findings)
    print(f"\n{'all checks passed' if not failed else f'{failed} check(s) failed'}")
    return 0 if not failed else 1


def _reachable_tracking_uri(args: argparse.Namespace, only_read: bool = False, login: bool = True) -> str:
    """--tracking-uri, else MLFLOW_TRACKING_URI, else ./mlflow.db; checked before any work starts. A store that is
    only read must exist already: none is created."""
    from grokbench.sweep.uri import check_reachable, check_readable, tracking_uri

    uri = tracking_uri(args.tracking_uri)
    check_readable(uri) if only_read else check_reachable(uri, login=login)
    return uri


def cmd_export(args: argparse.Namespace) -> int:
    from grokbench.sweep.archive import export_runs
    from grokbench.sweep.keys import EXPERIMENT_PREFIX, experiment_name

    uri = _reachable_tracking_uri(args, only_read=True)
    name = experiment_name(args.experiment)
    out = Path(args.out or f"{name.removeprefix(EXPERIMENT_PREFIX)}-runs.jsonl.gz")
    count = export_runs(uri, name, out)
    print(
        f"wrote {count} runs of {name} to {out} "
        f"({out.stat().st_size / 1e6:.1f} MB); load them anywhere with: grokbench import {out}"
    )
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from grokbench.sweep.archive import import_runs
    from grokbench.sweep.retry import retry_only_patiently

    retry_only_patiently()  # MLflow's HTTP retries would re-send a create_run; ours are safe to repeat
    uri = _reachable_tracking_uri(args)
    added, present = import_runs(Path(args.archive), uri, progress=_progress_line)
    _end_progress_line()
    print(f"added {added} runs to {uri}" + (f"; {present} were there already" if present else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="grokbench", description="Benchmark grokking interventions.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for add in (_add_run, _add_benches, _add_doctor, _add_sweep, _add_benchmark, _add_archives):
        add(commands)
    return parser


def _add_run(commands) -> None:
    from grokbench.tasks import TASKS

    run = commands.add_parser(
        "run",
        help="train one trial and report when it memorised and grokked",
        description="Train one trial; `grokbench run TASK --help` lists the task's settings.",
    )
    tasks = run.add_subparsers(
        dest="task", required=True, metavar="TASK", parser_class=Parser, help=", ".join(sorted(TASKS))
    )
    for name, task in sorted(TASKS.items()):
        one = tasks.add_parser(name, help=task.description, description=task.description)
        names = _add_setting_flags(one, task)
        one.add_argument("--json", action="store_true", help="end stdout with the summary as one JSON line")
        one.set_defaults(handler=cmd_run, setting_names=names)


def _add_benches(commands) -> None:
    from grokbench.tasks import TASKS

    bench = commands.add_parser("bench", help="time one optimiser update of each method on a task (default mnist)")
    bench.add_argument("--task", default="mnist", choices=sorted(TASKS), help="the task (default mnist)")
    bench.add_argument("--preset", default=None, help="one of the task's presets (default: its defaults)")
    bench.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    bench.add_argument("--rounds", type=int, default=20, help="timed rounds (default 20)")
    bench.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    bench.add_argument("--data-dir", default=None, help="directory holding the task's data, e.g. MNIST/raw/")
    bench.add_argument("--json", action="store_true", help="end stdout with the timings as one JSON line")
    bench.set_defaults(handler=cmd_bench)

    overhead = commands.add_parser("bench-sweep", help="a trial's wall clock inside a sweep vs grokbench run")
    overhead.add_argument("--task", default="mnist")
    overhead.add_argument("--method", default="baseline")
    overhead.add_argument("--loss", default="ce")
    overhead.add_argument("--max-epochs", type=int, default=500)
    overhead.add_argument("--threads", type=int, default=1)
    overhead.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    overhead.add_argument("--json", action="store_true", help="end stdout with the figures as one JSON line")
    overhead.set_defaults(handler=cmd_bench_sweep)

    nodes = commands.add_parser("bench-nodes", help="a tiny sweep on one node vs on two local nodes (same cores)")
    nodes.add_argument("--trials", type=int, default=8)
    nodes.add_argument("--json", action="store_true", help="end stdout with the figures as one JSON line")
    nodes.set_defaults(handler=cmd_bench_nodes)


def _add_doctor(commands) -> None:
    doctor = commands.add_parser("doctor", help="check that every Ray node can run a sweep's trials")
    doctor.add_argument("sweep", nargs="?", default="mnist", help="the sweep whose trials to check (default mnist)")
    doctor.add_argument("--address", help="Ray cluster address (default as for sweep)")
    doctor.add_argument("--tracking-uri", help="MLflow tracking URI (default as for sweep)")
    doctor.add_argument("--storage", help="checkpoint storage to test a write to (default ./grokbench_results)")
    doctor.add_argument("--cpus-per-trial", type=float)
    doctor.add_argument("--gpus-per-trial", type=float)
    doctor.set_defaults(handler=cmd_doctor)


def _add_sweep(commands) -> None:
    sweep = commands.add_parser("sweep", help="run a sweep file's trials on Ray Tune, one MLflow run per trial")
    sweep.add_argument(
        "sweep", help="a sweep name in sweeps/ (mnist, mnist_lambda, mnist_init, mnist_tune, ...) or a path"
    )
    sweep.add_argument("--seeds", type=_int_list, help="override the seeds, e.g. 0,1,2")
    sweep.add_argument("--max-epochs", type=int, help="override the budget (epochs per trial)")
    sweep.add_argument("--methods", type=_name_list, help="only these methods, e.g. baseline,grokalign")
    sweep.add_argument(
        "--only",
        type=_setting_values,
        action="append",
        metavar="SETTING=VALUES",
        help="only the trials with these values of a setting, e.g. freeze_embeddings=false (repeatable; "
        "part of a sweep run on its own, as in the whole sweep)",
    )
    sweep.add_argument("--num-samples", type=int, help="Optuna trials per method (search sweeps)")
    _add_execution_flags(
        sweep,
        resume="continue the latest sweep of this file (or --sweep-id)",
        dry_run="list the trials and an estimated cost, then exit",
    )
    sweep.add_argument(
        "--measure-epochs",
        type=int,
        help="epochs timed per method on this machine for the dry run's estimate (default 2; 0: no estimate)",
    )
    sweep.add_argument("--sweep-id", help="name a new sweep, or pick the sweep to --resume")
    sweep.add_argument(
        "--rerun",
        action="store_true",
        help="also run the trials that already have an outcome in the tracking store (by default they are skipped)",
    )
    sweep.add_argument("--smoke", action="store_true", help="a small version of the sweep (fewer seeds, short budget)")
    sweep.set_defaults(handler=cmd_sweep)


def _add_execution_flags(parser: argparse.ArgumentParser, resume: str, dry_run: str) -> None:
    """Where and how trials run on Ray Tune and log to MLflow: the flags `sweep` and `benchmark` share."""
    parser.add_argument("--cpus-per-trial", type=float, help="CPUs per trial (= its torch threads)")
    parser.add_argument("--gpus-per-trial", type=float, help="GPUs per trial (fractions allowed); > 0 trains on CUDA")
    parser.add_argument("--max-concurrent", type=int, help="at most this many trials at once (0: as resources allow)")
    parser.add_argument(
        "--address", help="Ray cluster address (default: RAY_ADDRESS, a running local cluster, else a new local Ray)"
    )
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI, or the path of a SQLite store (default: "
        "MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)",
    )
    parser.add_argument(
        "--storage",
        help="where Tune keeps checkpoints and sweep state (default ./grokbench_results; "
        "shared storage such as s3://... on a multi-node cluster)",
    )
    parser.add_argument("--resume", action="store_true", help=resume)
    parser.add_argument("--dry-run", action="store_true", help=dry_run)


def _add_benchmark(commands) -> None:
    benchmark = commands.add_parser(
        "benchmark",
        help="tune every arm of a suite alike on every workload, confirm on fresh seeds, score (sweeps/benchmarks/)",
    )
    benchmark.add_argument("suite", help="a suite name in sweeps/benchmarks/ (smoke, lite, full) or a path")
    _add_execution_flags(
        benchmark,
        resume="continue the latest run of this suite",
        dry_run="list the workloads, arms, rulesets, n/a pairs, trial count and an estimated cost, then exit",
    )
    benchmark.add_argument(
        "--benchmark-id", help="name a new benchmark (default <suite>-<date>-<time>), or pick the one to resume"
    )
    benchmark.add_argument(
        "--out", help="where the leaderboard it ends with is written (default build/analysis/benchmark_<suite>/)"
    )
    benchmark.add_argument(
        "--measure-updates",
        type=int,
        help="updates timed per (workload, arm) on this machine: for the dry run's estimate (default 20; 0: no "
        "estimate), or for the cost per update a run records (default 200)",
    )
    benchmark.set_defaults(handler=cmd_benchmark)


def _add_archives(commands) -> None:
    export = commands.add_parser("export", help="write an experiment's finished runs to one portable file")
    export.add_argument("experiment", help="the sweep's name, e.g. mnist (its MLflow experiment is grokbench/mnist)")
    export.add_argument("--tracking-uri", help="MLflow tracking URI (default as for sweep)")
    export.add_argument("--out", help="the file to write (default <experiment>-runs.jsonl.gz)")
    export.set_defaults(handler=cmd_export)

    import_ = commands.add_parser("import", help="add an exported file's runs to a tracking store (once each)")
    import_.add_argument("archive", help="a file written by grokbench export")
    import_.add_argument("--tracking-uri", help="MLflow tracking URI (default as for sweep)")
    import_.set_defaults(handler=cmd_import)


class Parser(argparse.ArgumentParser):
    """Flags are never taken by abbreviation (`--p` must not quietly mean `--probe-size`), and a refusal is one
    line, as every other refusal is: the usage is a --help away."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{**kwargs, "allow_abbrev": False})

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    from grokbench.tasks import DataError

    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        print(f"grokbench: error: {_unknown_flag_error(args, unknown)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    notes = logging.StreamHandler(sys.stderr)  # the library's warnings (a diverged trial) reach the user
    notes.setFormatter(logging.Formatter("grokbench: %(message)s"))
    logging.getLogger("grokbench").addHandler(notes)
    try:
        return args.handler(args)
    except (ConfigError, DataError, SweepError) as err:
        print(f"grokbench: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("\ngrokbench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        logging.getLogger("grokbench").removeHandler(notes)


if __name__ == "__main__":
    sys.exit(main())
