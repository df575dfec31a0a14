"""The `grokbench` command line: `run` one trial, `bench` the methods' update cost."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from typing import Any, Sequence

from grokbench.config import ConfigError, TrialConfig

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

FIELD_HELP = {
    "method": "baseline | grokalign | grokfast | adversarial",
    "loss": "ce | mse (task default)",
    "lam": "the method's strength: grokalign penalty weight, grokfast λ_gf, adversarial σ multiplier",
    "init_scale": "multiply the initial weights by this (mnist: 8)",
    "max_epochs": "epoch budget; a run that has not grokked by then is censored",
    "eval_every": "evaluate every this many epochs",
    "epochs_after_grok": "keep training this many epochs after grokking (default 0: stop at grokking)",
    "device": "auto | cpu | cuda",
    "dtype": "float64 | float32 (task default)",
    "threads": "torch threads (default: torch's choice)",
    "data_dir": "directory holding MNIST/raw/ (default $GROKBENCH_DATA, else a per-user cache)",
    "grokalign_estimator": "projection (the authors') | exact | hutchinson | hutchinson_shared",
}


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    """One --flag per TrialConfig field; values stay strings here and are checked by TrialConfig.from_dict."""
    for f in fields(TrialConfig):
        if f.name == "task":
            continue
        parser.add_argument(
            "--" + f.name.replace("_", "-"), dest=f.name, default=None, metavar=f.name.upper(),
            help=FIELD_HELP.get(f.name, f"default {f.default}"),
        )


def _config_from_args(args: argparse.Namespace) -> TrialConfig:
    given = {f.name: getattr(args, f.name) for f in fields(TrialConfig) if getattr(args, f.name, None) is not None}
    return TrialConfig.from_dict(given)


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


def cmd_bench(args: argparse.Namespace) -> int:
    from grokbench.bench import bench_json, format_bench, run_bench

    threads = int(args.threads) if args.threads is not None else None
    if threads is not None and threads < 1:
        raise ConfigError("threads", f"must be >= 1, got {threads}")
    report = run_bench(
        threads=threads, rounds=args.rounds, device=args.device, data_dir=args.data_dir,
        progress=lambda msg: print(f"\r{msg}", end="", file=sys.stderr, flush=True),
    )
    print(file=sys.stderr)
    print(format_bench(report))
    if args.json:
        _print_json(bench_json(report))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from grokbench.tasks import TASKS

    parser = argparse.ArgumentParser(prog="grokbench", description="Benchmark grokking interventions.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="train one trial and report when it memorised and grokked")
    run.add_argument("task", choices=sorted(TASKS), help="the task")
    _add_config_options(run)
    run.add_argument("--json", action="store_true", help="end stdout with the summary as one JSON line")
    run.set_defaults(handler=cmd_run)

    bench = commands.add_parser("bench", help="time one optimiser update of each method on mnist (float64)")
    bench.add_argument("--threads", default=None, help="torch threads (default: torch's choice)")
    bench.add_argument("--rounds", type=int, default=20, help="timed rounds (default 20)")
    bench.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    bench.add_argument("--data-dir", default=None, help="directory holding MNIST/raw/")
    bench.add_argument("--json", action="store_true", help="end stdout with the timings as one JSON line")
    bench.set_defaults(handler=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from grokbench.tasks import DataError

    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ConfigError, DataError) as err:
        print(f"grokbench: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("\ngrokbench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
