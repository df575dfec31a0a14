"""The questions a benchmark answers, workload by workload, as a table read off the confirmation runs: does each arm
beat the tuned baseline (the *open* ruleset's), in steps and in modelled time, and by how much; does it win only
against the *paper* ruleset's baseline, whose settings were not tuned; and does it remove the grokking delay (reach
the target before memorising the training set) or only have a shorter one.

A verdict goes no further than its statistics: *faster* where the speed-up's 95 % interval lies above 1, or, with
no interval (a censored median, or too few seeds that reached the target for a fit), where the ratio, or the bound
it is, lies above 1 and the log-rank p < 0.05; *slower* the mirror image; otherwise *not shown*. The delay column
is descriptive: medians of a few seeds, no test.
"""

from __future__ import annotations

from collections.abc import Sequence

from analysis.cells import fmt, speed_text
from analysis.leaderboard_confirmed import arm_speed_up, baseline_arm, median_delay
from analysis.leaderboard_data import Benchmark, ConfirmedSeed
from analysis.output import Table
from analysis.stats import SpeedUp

TUNED, PAPER = "open", "paper"  # the ruleset whose baseline is tuned, and the published regime's
MEASURES = {"steps": "steps", "modelled": "time"}  # as the leaderboard scores them, and their words here
ALPHA = 0.05
FASTER, SLOWER, NOT_SHOWN = "faster", "slower", "not shown"


def verdict(s: SpeedUp | None) -> str | None:
    """faster / slower / not shown for a speed-up (baseline ÷ arm); None where there is none (the baseline
    itself, a row with no confirmation run)."""
    if s is None:
        return None
    if s.ratio is None:
        return NOT_SHOWN
    if s.ci_low is not None and s.ci_high is not None:
        return FASTER if s.ci_low > 1 else SLOWER if s.ci_high < 1 else NOT_SHOWN
    significant = s.p_value is not None and s.p_value < ALPHA
    # a bound ">" / "≥" says only that the ratio exceeds the value shown, "<" / "≤" that it falls short of it
    if significant and s.ratio > 1 and s.bound not in ("<", "≤"):
        return FASTER
    if significant and s.ratio < 1 and s.bound not in (">", "≥"):
        return SLOWER
    return NOT_SHOWN


def verdict_text(verdicts: dict[str, str | None]) -> str:
    """One cell from a verdict per measure: `faster (steps, time)`, `slower (time)`, `not shown`."""
    words = []
    for outcome in (FASTER, SLOWER):
        measures = [MEASURES[m] for m, v in verdicts.items() if v == outcome]
        if measures:
            words.append(f"{outcome} ({', '.join(measures)})")
    if words:
        return "; ".join(words)
    return "—" if all(v is None for v in verdicts.values()) else NOT_SHOWN


def only_under_paper(open_: dict[str, str | None], paper: dict[str, str | None]) -> list[str]:
    """The measures in which the arm beats the paper ruleset's baseline but not the tuned one."""
    return [MEASURES[m] for m in MEASURES if paper.get(m) == FASTER and open_.get(m) != FASTER]


def removes_delay(seeds: Sequence[ConfirmedSeed]) -> bool:
    """Most of the seeds reached the target before memorising: no grokking delay left."""
    return 2 * sum(s.before_memorising for s in seeds) > len(seeds)


def delay_text(arm: Sequence[ConfirmedSeed], base: Sequence[ConfirmedSeed]) -> tuple[str, str]:
    """(what the arm's delay is beside the baseline's, the cell's figures: the two medians)."""
    ours, theirs = median_delay(arm), median_delay(base)
    figures = f"{fmt(ours)} vs {fmt(theirs)}"
    if not any(s.reached for s in arm):
        return "—", figures
    if removes_delay(arm):
        return ("none, nor the baseline's" if removes_delay(base) else "removes it"), figures
    if not any(s.reached for s in base):
        return "the baseline never reached the target", figures
    if ours is not None and theirs is not None and ours < theirs:
        return "shorter median", figures
    return "not shorter", figures


RULESET_WORDS = {TUNED: "tuned", PAPER: "paper"}
HEADERS = [
    "workload",
    "arm",
    *(
        header
        for word in RULESET_WORDS.values()
        for header in (
            f"vs {word} baseline: steps",
            f"vs {word} baseline: time",
            f"beats the {word} baseline",
            f"delay, {word}: arm vs baseline (median steps)",
            f"grokking delay, {word}",
        )
    ),
    "wins only under paper",
]


def verdict_row(bench: Benchmark, workload: str, arm: str, base: str) -> tuple[list[str], dict]:
    shown, columns, verdicts = [workload, arm], {}, {}
    for ruleset in RULESET_WORDS:
        seeds, base_seeds = bench.confirmed(workload, arm, ruleset), bench.confirmed(workload, base, ruleset)
        ran = bool(seeds and base_seeds)
        speeds = {m: arm_speed_up(bench, workload, arm, ruleset, m) if ran else None for m in MEASURES}
        verdicts[ruleset] = {m: verdict(s) for m, s in speeds.items()}
        how, figures = delay_text(seeds, base_seeds)
        shown += [*(speed_text(s) for s in speeds.values()), verdict_text(verdicts[ruleset]), figures, how]
        columns |= {f"{ruleset}_{m}_verdict": v for m, v in verdicts[ruleset].items()}
        columns |= {
            f"{ruleset}_{m}_{field}": getattr(s, field, None)
            for m, s in speeds.items()
            for field in ("ratio", "bound", "ci_low", "ci_high", "p_value")
        }
        columns[f"{ruleset}_delay_vs_baseline"] = how
    only = only_under_paper(verdicts[TUNED], verdicts[PAPER])
    shown.append(", ".join(only) or "—")
    columns["only_under_paper"] = ", ".join(only)
    return shown, columns


def verdicts_table(bench: Benchmark) -> Table:
    """A row per workload and arm the workload runs (the baseline aside): the answers, from the confirmation runs.
    A suite without both rulesets or a baseline arm has none to give: an empty table says why."""
    suite = bench.suite
    table = Table("verdicts", f"Against the tuned baseline: benchmark {suite.name} ({bench.benchmark_id})", HEADERS)
    base = baseline_arm(bench)
    if base is None or not {TUNED, PAPER} <= set(suite.rulesets):
        table.notes.append(f"no verdicts: the suite needs a baseline arm and both rulesets ({TUNED}, {PAPER})")
        return table
    for workload in suite.workloads:
        for arm in suite.arms:
            if arm != base and (workload, arm) not in suite.refused and (workload, base) not in suite.refused:
                shown, columns = verdict_row(bench, workload, arm, base)
                table.rows.append(shown)
                table.stats.append(columns)
    table.notes += verdict_notes(base)
    return table


def verdict_notes(base: str) -> list[str]:
    return [
        f"speed-up = the {base} arm's time ÷ the arm's, on the confirmation seeds of one ruleset (> 1: faster), "
        "by the confirmed tables' estimator, on steps and on modelled time; tuned baseline: the open ruleset's, "
        "whose learning rate and weight decay were tuned as every arm's were; paper baseline: the paper "
        "ruleset's, at the published regime; time: steps × the arm's measured seconds per update on the workload "
        "(the leaderboard's modelled time); —: no confirmation run of the arm or the baseline",
        "faster: the 95 % interval lies above 1, or, with no interval, the ratio (or the bound it is) lies above 1 "
        f"and the log-rank p < {ALPHA:g}; slower: the mirror image; not shown: neither, which is not 'no effect'",
        "wins only under paper: faster than the paper baseline but not shown faster than the tuned one, in that "
        "measure",
        "delay: the median over the seeds that reached the target, having memorised, of its steps from memorising "
        "to the target, the arm's vs the baseline's on the same ruleset; removes it: most of the arm's seeds reach "
        "the target before memorising (none, nor the baseline's: the baseline's too); shorter median / not "
        "shorter: descriptive, no test; —: the arm never reached the target",
    ]
