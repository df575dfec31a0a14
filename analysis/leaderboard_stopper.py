"""What the r_max stopper saved: per workload and ruleset, the tuning trials it stopped as misses, and the updates
and modelled hours the tuning ran against what it would have run with every stopped trial trained to its budget
(`grokbench.benchmark.stopper` says why stopping them changes no score)."""

from __future__ import annotations

from analysis.leaderboard_data import Benchmark
from analysis.output import Table
from grokbench.benchmark.suite import STOPPED_BY_R_MAX

HEADERS = ["workload", "ruleset", "tuning trials", "stopped", "updates run", "without the stopper", "saved"]
HEADERS += ["modelled h run", "modelled h without"]
STATS = ("trials", "stopped_trials", "updates_run", "updates_without", "modelled_s_run", "modelled_s_without")


def stopper_table(bench: Benchmark) -> Table:
    table = Table("stopper", "What the r_max stopper saved in tuning", HEADERS)
    totals = [0, 0, 0.0, 0.0, 0.0, 0.0]
    for name, workload in bench.suite.workloads.items():
        for ruleset in bench.suite.rulesets:
            counts = tuning_counts(bench, name, ruleset, workload.budget_updates)
            if counts[0]:
                table.rows.append([name, ruleset, *row_text(counts)])
                table.stats.append(dict(zip(STATS, counts, strict=True)))
                totals = [a + b for a, b in zip(totals, counts, strict=True)]
    table.rows.append(["all", "both", *row_text(totals)])
    table.stats.append(dict(zip(STATS, totals, strict=True)))
    table.notes += [
        "tuning trials that finished; stopped: those the stopper ended as misses; without the stopper: each stopped "
        "trial trained to its workload's budget, every other as it ran; saved: the share of those updates not run",
        "modelled hours: updates × the arm's seconds per update on the workload, from the benchmark's one cost "
        "measurement, one thread per trial; confirmation trials are never stopped and are not counted here",
    ]
    return table


def tuning_counts(bench: Benchmark, workload: str, ruleset: str, budget: int) -> list[float]:
    """[trials, stopped, updates run, updates without, modelled seconds run, modelled seconds without]."""
    counts = [0, 0, 0.0, 0.0, 0.0, 0.0]
    for outcome in bench.outcomes:
        where = outcome.coords
        if not outcome.finished or (where.phase, where.workload, where.ruleset) != ("tuning", workload, ruleset):
            continue
        ran = float(bench.runs[outcome.run_id].data.metrics.get("steps", 0.0))
        stopped = outcome.stopped_by == STOPPED_BY_R_MAX
        without = float(budget) if stopped else ran
        cost = bench.costs.per_update[workload, where.arm]
        counts = [
            a + b for a, b in zip(counts, (1, int(stopped), ran, without, ran * cost, without * cost), strict=True)
        ]
    return counts


def row_text(counts: list[float]) -> list[str]:
    trials, stopped, ran, without, seconds, seconds_without = counts
    saved = f"{1 - ran / without:.0%}" if without else "—"
    hours = [f"{s / 3600:.2f}" for s in (seconds, seconds_without)]
    return [f"{int(trials)}", f"{int(stopped)}", f"{ran:,.0f}", f"{without:,.0f}", saved, *hours]
