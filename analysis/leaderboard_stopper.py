"""What the r_max stopper saved: per workload and ruleset, the tuning trials it stopped as misses, and the updates
and modelled hours the tuning ran against what it would have run with every stopped trial trained to its budget
(`grokbench.benchmark.stopper` says why stopping them changes no score)."""

from __future__ import annotations

from analysis.leaderboard_data import Benchmark
from analysis.output import Table
from grokbench.benchmark.suite import STOPPED_BY_R_MAX

HEADERS = ["workload", "ruleset", "tuning trials", "stopped", "updates run", "without the stopper (at most)"]
HEADERS += ["saved (at most)", "modelled h run", "modelled h without (at most)"]
STATS = ("trials", "stopped_trials", "updates_run", "updates_without", "modelled_s_run", "modelled_s_without")


def stopper_table(bench: Benchmark) -> Table:
    table = Table("stopper", "What the r_max stopper saved in tuning", HEADERS)
    totals = [0, 0, 0.0, 0.0, 0.0, 0.0]
    for name in bench.suite.workloads:
        for ruleset in bench.suite.rulesets:
            counts = tuning_counts(bench, name, ruleset)
            if counts[0]:
                table.rows.append([name, ruleset, *row_text(counts)])
                table.stats.append(dict(zip(STATS, counts, strict=True)))
                totals = [a + b for a, b in zip(totals, counts, strict=True)]
    table.rows.append(["all", "all", *row_text(totals)])
    table.stats.append(dict(zip(STATS, totals, strict=True)))
    table.notes += [
        "tuning trials that finished; stopped: those the stopper ended as misses; without the stopper: each stopped "
        "trial counted at its budget (its epochs × its updates an epoch), every other as it ran; an upper bound, "
        "as a stopped trial might still have reached the target (and ended) or diverged before its budget; saved: "
        "the share of those updates not run, at most",
        "modelled hours: updates × the arm's seconds per update on the workload, from the benchmark's one cost "
        f"measurement, at {bench.stamp.get('threads', '?')} thread(s) per trial; confirmation trials are never "
        "stopped and are not counted here",
    ]
    return table


def tuning_counts(bench: Benchmark, workload: str, ruleset: str) -> list[float]:
    """[trials, stopped, updates run, updates without, modelled seconds run, modelled seconds without]."""
    counts = [0, 0, 0.0, 0.0, 0.0, 0.0]
    for outcome in bench.outcomes:
        where = outcome.coords
        if not outcome.finished or (where.phase, where.workload, where.ruleset) != ("tuning", workload, ruleset):
            continue
        run = bench.runs[outcome.run_id]
        ran = float(run.data.metrics.get("steps", 0.0))
        stopped = outcome.stopped_by == STOPPED_BY_R_MAX
        without = budget_updates(run, bench.suite.workloads[workload].budget_updates) if stopped else ran
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


def budget_updates(run, planned: int) -> float:
    """The trial's budget in updates: its epochs (the suite's updates rounded up to whole epochs) × its updates an
    epoch, read off its run; the suite's updates where the run does not say."""
    metrics, epochs = run.data.metrics, float(run.data.params.get("max_epochs", 0) or 0)
    if epochs and metrics.get("epochs"):
        return epochs * metrics["steps"] / metrics["epochs"]
    return float(planned)
