"""The leaderboard's tables: the score of every arm per ruleset and time measure (`grokbench.benchmark.score`, over
the tuning studies, as AlgoPerf's) beside its confirmation speed-up against the baseline, and the settings each
arm's tuning landed on beside its published default."""

from __future__ import annotations

import math

import pandas as pd

from analysis.cells import fmt, speed_text
from analysis.leaderboard_confirmed import POOLED, POOLED_TEST, arm_speed_up, baseline_arm, pooled_speed_up
from analysis.leaderboard_data import Benchmark
from analysis.output import Table
from grokbench.benchmark.outcomes import MEASURES, time_table, winners
from grokbench.benchmark.score import ArmScore, score_table

Panel = tuple[str, str]  # (ruleset, measure)
MEASURE_WORDS = {
    "steps": "steps: optimizer updates to the target",
    "modelled": "modelled: steps × the arm's measured seconds per update on the workload",
}
SPEED_FIELDS = ("bound", "ci_low", "ci_high", "estimand", "test", "note")


def scores(bench: Benchmark) -> dict[Panel, dict[str, ArmScore]]:
    """Each arm's ratios and B, per (ruleset, measure), from the tuning studies."""
    costs = bench.costs.per_update
    return {
        (r, m): score_table(time_table(bench.suite, bench.outcomes, r, m, costs), bench.suite.r_max)
        for r in bench.suite.rulesets
        for m in MEASURES
    }


def ranked(panel: dict[str, ArmScore]) -> list[ArmScore]:
    """Best rank first, an arm that runs nowhere last; ties (as `rank` has them) in the suite's order."""
    order = {arm: i for i, arm in enumerate(panel)}
    return sorted(panel.values(), key=lambda s: (s.score is None, rank(panel, s.arm) or 0, order[s.arm]))


def rank(panel: dict[str, ArmScore], arm: str) -> int | None:
    """1 + the number of arms that score higher (arms that tie share a rank, rounding aside: B is a sum of areas,
    and equal profiles summed in another order may differ in the last bits); None for an arm that runs nowhere."""
    score = panel[arm].score
    if score is None:
        return None
    return 1 + sum(s.score is not None and s.score > score and not math.isclose(s.score, score) for s in panel.values())


def leaderboard(bench: Benchmark, board: dict[Panel, dict[str, ArmScore]]) -> tuple[Table, pd.DataFrame]:
    """The leaderboard as shown (Markdown, LaTeX) and as its CSV: a row per (ruleset, measure, arm)."""
    headers = ["ruleset", "measure", "rank", "method", "score B", "workloads", "speed-up vs baseline [95 % CI]"]
    table = Table("leaderboard", f"Leaderboard: benchmark {bench.suite.name} ({bench.benchmark_id})", headers)
    records = []
    for (ruleset, measure), panel in board.items():
        for arm_score in ranked(panel):
            speed, count = pooled_speed_up(
                [s for w in bench.suite.workloads if (s := arm_speed_up(bench, w, arm_score.arm, ruleset, measure))]
            )
            is_base = arm_score.arm == baseline_arm(bench)
            speed = None if is_base else speed
            place = rank(panel, arm_score.arm)
            table.rows.append(
                [
                    ruleset,
                    measure,
                    "—" if place is None else str(place),
                    arm_score.arm,
                    "—" if arm_score.score is None else f"{arm_score.score:.3f}",
                    workloads_text(arm_score),
                    "baseline" if is_base else "—" if speed is None else speed_text(speed),
                ]
            )
            records.append(record(bench, ruleset, measure, place, arm_score, speed, count, is_base))
    table.notes += leaderboard_notes(bench)
    frame = pd.DataFrame(records)
    return table, frame.astype({"rank": "Int64"})  # whole numbers, blank for an arm that runs nowhere


def workloads_text(s: ArmScore) -> str:
    return f"{s.workloads}" + (f" ({len(s.refused)} n/a)" if s.refused else "")


def record(
    bench: Benchmark, ruleset: str, measure: str, place: int | None, s: ArmScore, speed, count: int, is_base: bool
) -> dict:
    """One CSV row: the rank and score, the ratio on each workload (inf: a miss; blank: n/a), the pooled speed-up
    (1 for the baseline itself)."""
    return {
        "ruleset": ruleset,
        "measure": measure,
        "rank": place,
        "method": s.arm,
        "score": s.score,
        "workloads": s.workloads,
        "speedup_vs_baseline": 1.0 if is_base else getattr(speed, "ratio", None),
        **{f"speedup_{name}": getattr(speed, name, None) for name in SPEED_FIELDS},
        "speedup_workloads": count,
        "na_workloads": len(s.refused),
        **{f"ratio_{w}": s.ratios.get(w) for w in bench.suite.workloads},
    }


def leaderboard_notes(bench: Benchmark) -> list[str]:
    suite, stamp, costs = bench.suite, bench.stamp, bench.costs
    return [
        f"score B: the area under ρ(τ) from τ = 1 to r_max, ÷ (r_max − 1), r_max = {suite.r_max:g}, over the "
        "tuning studies: an arm's time on a workload is the median over its studies of each study's fastest trial "
        "to the target (a miss: ∞), r = that time ÷ the best arm's, a time above r_max × the best a miss; ρ(τ): "
        "the fraction of the arm's "
        f"workloads with r ≤ τ. {MEASURE_WORDS['steps']}; {MEASURE_WORDS['modelled']}",
        "rank: 1 + the arms with a higher score B in the same ruleset and measure (a tie shares a rank); "
        "workloads: how many the arm's profile is over; n/a: workloads whose task refuses the arm",
        f"speed-up vs baseline (> 1: faster than the {baseline_arm(bench) or '(no baseline arm)'} arm), from the "
        f"confirmation runs: the {POOLED} (each baseline ÷ arm as analysis.stats.speed_up takes it: a ratio of "
        "geometric means with a Welch t-test on log times where every seed of both reached the target, else a "
        "log-normal AFT time ratio, or a ratio of Kaplan–Meier medians, > x where the baseline's is censored); "
        f"the 95 % interval: over several workloads a {POOLED_TEST}, over one that workload's own",
        f"benchmark {bench.benchmark_id} of suite {suite.name}: suite file sha256 {stamp['suite sha256']}; "
        f"grokbench commit {stamp['commit']}; trials on CPU {stamp['CPU']}, torch threads {stamp['threads']}; "
        f"seconds per update measured on {costs.machine} over {costs.measure_updates} updates",
    ]


def value_text(value) -> str:
    if value is None:
        return "—"
    return fmt(float(value), 4) if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def tuned_settings(bench: Benchmark) -> Table:
    """Per (workload, arm, ruleset), each tuned setting of the winning trial (of the median study) beside the value
    the suite's workload and arm give it with nothing drawn (the arm's published default)."""
    suite = bench.suite
    headers = ["workload", "arm", "ruleset", "setting", "tuned", "published default", "winner", "winner's steps"]
    table = Table("tuned_settings", f"Tuned settings: benchmark {suite.name} ({bench.benchmark_id})", headers)
    by_coords = {o.coords: o for o in bench.outcomes}
    for (workload, arm, ruleset), coords in sorted(winners(suite, bench.outcomes).items(), key=_suite_order(bench)):
        won = by_coords.get(coords)
        default = suite.config(workload, arm, {}, seed=0).to_dict()
        where = f"study {coords.study}, trial {coords.trial}"
        steps = "—" if won is None or won.steps_to_target is None else f"{won.steps_to_target:,}"
        for setting in sorted(suite.space(workload, arm, ruleset)) or ["(nothing tuned)"]:
            tuned = won.drawn.get(setting) if won is not None else None
            table.rows.append(
                [workload, arm, ruleset, setting, value_text(tuned), value_text(default.get(setting)), where, steps]
            )
            table.stats.append({"tuned_value": tuned, "default_value": _number(default.get(setting))})
    table.notes.append(
        "winner: the fastest trial to the target of the arm's median study (tie: the lower trial; no trial there "
        "reached it: trial 0), the setting the confirmation reran; published default: the value the suite's "
        "workload and arm settings resolve to with nothing drawn (— : none, the method's own default applies)"
    )
    return table


def _number(value) -> float | None:
    """A setting's value as a CSV number; None for a setting that is not one (a name, None)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _suite_order(bench: Benchmark):
    """(workload, arm, ruleset) → its place in the suite file."""
    suite = bench.suite
    places = [{name: i for i, name in enumerate(names)} for names in (suite.workloads, suite.arms, suite.rulesets)]
    return lambda item: tuple(place[name] for place, name in zip(places, item[0], strict=True))
