"""Where a table's trials came from, said under it: the machines its seconds were measured on (steps compare across
machines, seconds only within one), and, where several experiments were read, the experiment of each kept run."""

from __future__ import annotations

import pandas as pd

from grokbench.machine import NOT_RECORDED


def machine_note(runs: pd.DataFrame) -> str:
    """The machine a table's seconds come from, or that they mix machines, naming each with its number of trials.
    Runs logged before grokbench recorded machines are grouped as one, "machine not recorded"."""
    machines = runs["machine"].fillna(NOT_RECORDED) if "machine" in runs else pd.Series(NOT_RECORDED, index=runs.index)
    counts = sorted(machines.value_counts().items())
    if len(counts) > 1:
        named = "; ".join(f"{name} ({n} trials)" for name, n in counts)
        return f"seconds mix machines, so they compare only roughly (steps compare across them): {named}"
    if not counts or counts[0][0] == NOT_RECORDED:
        return f"seconds: {NOT_RECORDED} (runs logged before grokbench recorded where a trial ran)"
    return f"seconds measured on one machine: {counts[0][0]}"


def by_experiment(runs: pd.DataFrame) -> str:
    """`mnist 3, mnist_ce 7`: how many of the runs each experiment holds."""
    return ", ".join(f"{name} {n}" for name, n in sorted(runs["experiment"].value_counts().items()))


def experiments_note(rows: list[str]) -> str:
    """The footnote naming each row's runs' experiments (`rows`: "label experiment n, ..." per row)."""
    return (
        "a trial that several experiments hold counts once (the run with an outcome, then the one with the "
        f"larger budget, then the later one); each row's trials by experiment: {'; '.join(rows)}"
    )
