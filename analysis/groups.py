"""Runs grouped as the tables' rows and the figures' lines: one group per method, λ and variant (and the values of
any further columns), in the paper's order; the baseline a group is compared with; and a group's sample of one
measure (steps, seconds or grokking-phase seconds), censored at the budget where a trial did not grok."""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd

from analysis.runs import event_columns
from analysis.stats import Sample
from grokbench.methods import METHODS

# the paper's four first, in its order, then the other methods as the registry lists them
METHOD_NAMES = {name: method.title or name for name, method in METHODS.items()}
LOSS_NAMES = {"mse": "MSE", "ce": "Cross-entropy"}
MEASURES = {  # Table 1's measured columns: key → (header, value when grokked, value at the budget when censored)
    "steps": ("Number of Steps", "steps_to_grok", "steps"),
    "time": ("Absolute Time (s)", "time_to_grok_s", "train_time_s"),
    "phase": ("Grokking Phase Time (s)", "grok_phase_time_s", "phase_at_budget"),
}
SECONDS_MEASURES = ("time", "phase")  # the measures a machine's speed changes


def method_rank(method: str) -> tuple[int, str]:
    """The paper's row order (Baseline, GrokAlign, Grokfast, Adversarial Training), other methods after it."""
    return (list(METHOD_NAMES).index(method) if method in METHOD_NAMES else len(METHOD_NAMES), method)


def row_label(method: str, lam: float, shared: bool, variant: str = "") -> str:
    """The method's name, with λ where it ran at several and its own settings where they differ from its
    defaults (a variant, e.g. GrokAlign's cheaper penalties)."""
    name = METHOD_NAMES.get(method, method)
    details = [] if shared or method == "baseline" else [f"λ={lam:g}"]
    details += [variant] if variant else []
    return f"{name} ({', '.join(details)})" if details else name


class RunGroup(NamedTuple):
    """The runs of one method at one λ (and one value of each `by` column), as a table row or a figure's line."""

    label: str
    method: str
    lam: float
    several_lams: bool  # the method ran at more than one λ (within its `by` group): the label names λ
    by: tuple
    runs: pd.DataFrame


def run_groups(runs: pd.DataFrame, by: tuple[str, ...] = ()) -> list[RunGroup]:
    """One group per method, λ and variant (and `by` values), in paper order: method, then λ, variant, `by`."""
    if "variant" not in runs:  # runs that did not come through analysis.runs: the methods as their authors ran them
        runs = runs.assign(variant="")
    several = runs.groupby(["method", *by])["lam"].transform("nunique") > 1
    groups = []
    for (method, lam, variant, *rest), group in runs.groupby(["method", "lam", "variant", *by]):
        many = bool(several[group.index[0]])
        label = row_label(method, lam, shared=not many, variant=variant)
        groups.append(RunGroup(label, method, lam, many, tuple(rest), group))
    return sorted(groups, key=lambda g: (method_rank(g.method), g.lam, g.label, g.by))


def row_groups(runs: pd.DataFrame, varied: list[str]) -> list[RunGroup]:
    """A table's row groups: the runs that grokked or were censored, per loss, value of each varied task setting
    and method (paper order)."""
    finished = runs[runs["status"].isin(["grokked", "censored"])]
    return sorted(run_groups(finished, by=("loss", *varied)), key=lambda g: g.by)


def by_task_settings(runs: pd.DataFrame, varied: list[str]) -> list[tuple[tuple, pd.DataFrame]]:
    """The runs per value of the varied task settings (one group of all where none varies)."""
    return list(runs.groupby(varied, sort=True)) if varied else [((), runs)]


def with_conditions(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs that did not come through analysis.runs (no condition named) are all of one condition."""
    return runs if "condition" in runs else runs.assign(condition="")


def varied_groups(runs: pd.DataFrame, by: str) -> list:
    """(method, loss, condition) groups that ran at two or more values of `by`."""
    return [
        (k, g)
        for k, g in with_conditions(runs).groupby(["method", "loss", "condition"], sort=True)
        if g[by].nunique() >= 2
    ]


def reference_baseline(block: pd.DataFrame) -> pd.DataFrame:
    """What a block's rows (one init scale, one condition) are compared with: its baseline that changes nothing but
    the condition (not a baseline variant, such as a weight-decay control), else every baseline of the block."""
    baselines = block[block["method"] == "baseline"]
    if "variant" not in baselines:
        return baselines
    plain = baselines[baselines["variant"] == baselines["condition"]]
    return plain if not plain.empty else baselines


def with_budget_columns(runs: pd.DataFrame) -> pd.DataFrame:
    runs = runs.copy()
    # a censored run's grokking phase lasted from memorising to the budget; one that never memorised has not begun it
    runs["phase_at_budget"] = (runs["train_time_s"] - runs["time_to_memorise_s"]).fillna(0.0)
    return runs


def samples(group: pd.DataFrame, measure: str) -> Sample:
    """(values, observed, seeds) of one of `MEASURES` over the group's grokked and censored trials."""
    _, at_grok, at_budget = MEASURES[measure]
    done = group[group["status"].isin(["grokked", "censored"])]
    observed = (done["status"] == "grokked").tolist()
    values = [float(r[at_grok] if o else r[at_budget]) for o, (_, r) in zip(observed, done.iterrows(), strict=False)]
    return Sample(values, observed, done["seed"].tolist())


def event_sample(group: pd.DataFrame, event: str) -> Sample:
    """Epochs to `event` where a run reached it, else the epochs it ran (censored there)."""
    _, epochs, _ = event_columns(event)
    observed = group[epochs].notna()
    return Sample(
        group[epochs].where(observed, group["epochs"]).astype(float).tolist(), observed.tolist(), group["seed"].tolist()
    )
