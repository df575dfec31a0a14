"""The end of a sweep on the terminal: the outcome table, a search's best settings (also kept as MLflow tags),
the counts, and where to look next (the MLflow runs, the tables, the command that continues the sweep)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from grokbench.config import TrialConfig
from grokbench.progress import counted, duration
from grokbench.resolve import config_from
from grokbench.sweep.keys import trial_key
from grokbench.sweep.live import summary_table
from grokbench.sweep.mlflow_store import BEST_PREFIX, TrackingStore
from grokbench.sweep.retry import patiently
from grokbench.sweep.spec import SweepSpec
from grokbench.sweep.uri import runs_link


def report_sweep(
    spec: SweepSpec,
    summaries: list[dict[str, Any]],
    grids: list | None,
    store: TrackingStore,
    experiment_id: str,
    sweep_id: str,
    seconds: float,
    tables_selection: str,
    out,
    smoke: bool = False,
) -> int:
    """The outcome table, a search's best settings, the counts and where to look; returns how many failed."""
    errors = sum(1 for s in summaries if s["status"] == "failed")
    print(file=out)
    if summaries:
        print(summary_table(summaries), file=out)
    if smoke and summaries and not any(s["status"] == "grokked" for s in summaries):
        print(smoke_note(spec), file=out)
    if spec.search and grids:
        report_best(spec, grids, store, experiment_id, sweep_id, out)
    print(f"\n{counted(len(summaries) - errors, 'trial')} finished, {errors} failed, in {duration(seconds)}.", file=out)
    report_where_to_look(store.uri, experiment_id, tables_selection, out)
    return errors


def smoke_note(spec: SweepSpec) -> str:
    """Why a smoke sweep's trials did not grok: it is not a result."""
    return (
        f"\nno trial grokked: a --smoke budget ({spec.max_epochs} epochs) is too short to grok. It checks that the "
        "sweep runs end to end; run it without --smoke for its full budget."
    )


def report_best(spec: SweepSpec, grids: list, store: TrackingStore, experiment_id: str, sweep_id: str, out) -> None:
    """Each searched method's best setting, printed and tagged on the experiment and on its run."""
    from grokbench.sweep.trainable import OBJECTIVE

    print(
        "\nbest setting per method (objective: seconds to grok; a trial that did not grok counts at its "
        "budget's seconds):",
        file=out,
    )
    tuned = {}
    for method, grid in zip(spec.search.space, grids, strict=False):
        finished = [r for r in grid if r.error is None and r.metrics and "summary" in r.metrics]
        if not finished:
            print(f"  {method:<12} no finished trial", file=out)
            continue
        best = min(finished, key=lambda r: r.metrics[OBJECTIVE])
        config = best.config["trial"]["config"]
        values = {k: config[k] for k in spec.search.space[method]}
        text = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        outcome = best.metrics["summary"]["status"]
        print(f"  {method:<12} {text}  ({best.metrics[OBJECTIVE]:.1f} s, {outcome})", file=out)
        tags = {f"{BEST_PREFIX}{sweep_id}.{method}.{k}": str(v) for k, v in values.items()}
        key = trial_key(config)
        patiently(lambda tags=tags, key=key: store.mark_best(experiment_id, sweep_id, key, tags), store.uri)
        tuned[method] = tuned_setting(config_from(config, stored=True), values)
    if tuned:
        print(f"\n{methods_block(tuned, f'tuned by sweep {sweep_id} ({spec.name})')}", file=out)


TUNED_DIGITS = 4  # significant figures a tuned value is pasted with: the objective cannot tell the rest apart


def tuned_setting(cfg: TrialConfig, searched: Iterable[str]) -> dict[str, Any]:
    """A tuned method as a confirmation sweep sets it: each searched value (rounded to TUNED_DIGITS significant
    figures, by name, so that the sweep's report and the analysis print the same block), then the method's own
    settings where the tuning ran them off their defaults."""
    flat = cfg.to_dict()
    values = {name: float(f"{flat[name]:.{TUNED_DIGITS}g}") for name in sorted(searched)}
    return {**values, **{k: v for k, v in cfg.method_settings.changed().items() if k not in values}}


def methods_block(tuned: dict[str, dict[str, Any]], source: str) -> str:
    """The `methods:` section of a sweep file holding each tuned method's setting, ready to paste over a
    confirmation sweep's (sweeps/mnist_tuned.yaml); YAML-safe (1e-05 written as 1.0e-05, which YAML reads as a
    number)."""
    body = yaml.safe_dump({"methods": tuned}, default_flow_style=None, sort_keys=False, allow_unicode=True)
    return f"# {source}: paste over the methods: section of the confirmation sweep file\n{body.rstrip()}"


def report_where_to_look(uri: str, experiment_id: str, tables_selection: str, out) -> None:
    """The MLflow UI command and runs link, and the tables command."""
    print(f"runs:    mlflow ui --backend-store-uri {uri}" if uri.startswith("sqlite") else f"runs:    {uri}", file=out)
    print(f"         then open {runs_link(uri, experiment_id)}", file=out)
    print(f"tables:  python -m analysis.tables --tracking-uri {uri} {tables_selection}", file=out)


def report_unfinished(unfinished: int, spec: SweepSpec, sweep_id: str, smoke: bool, storage: str | None, out) -> None:
    """The command that continues the sweep: the flags its plan cannot restore (where the plan is, and --smoke,
    which names the sweep)."""
    smoke_flag = " --smoke" if smoke else ""
    storage_flag = f" --storage {storage}" if storage else ""
    print(
        f"{counted(unfinished, 'trial')} unfinished; continue with: grokbench sweep "
        f"{spec.path}{smoke_flag} --resume --sweep-id {sweep_id}{storage_flag}  (the sweep's other flags are "
        "restored from its plan)",
        file=out,
    )
