"""The leaderboard from a real SQLite MLflow store written as a benchmark's driver writes one: a parent run with the
suite file, its stamp and the cost measurement, and trial runs with known times; every figure checked against
values worked out by hand below."""

import hashlib
import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from mlflow.entities import Metric, Param

from analysis.leaderboard import FOLDER, build_leaderboard, main
from analysis.leaderboard_confirmed import pooled_speed_up
from analysis.leaderboard_data import _costs, _suite
from analysis.leaderboard_tables import rank
from analysis.leaderboard_verdicts import verdict
from analysis.runs import AnalysisError
from analysis.stats import SpeedUp
from grokbench.benchmark.outcomes import DRAWN_TAG, TRIAL_TAG
from grokbench.benchmark.score import ArmScore
from grokbench.benchmark.suite import STOPPED_BY_R_MAX, Coordinates
from grokbench.machine import as_tags
from grokbench.sweep.keys import KEY_TAG, STOPPED_BY_TAG, SWEEP_TAG
from grokbench.sweep.mlflow_store import PARENT_RUN_TAG, PARENT_TAG, TrackingStore

SUITE = """\
name: tiny
r_max: 4
rulesets:
  paper: {studies: 3, trials: 1}
  open:
    studies: 1
    trials: 1
    ranges:
      lr: {low: 1.0e-3, high: 1.0e-1}
      weight_decay: {low: 1.0e-3, high: 1.0}
confirmation_seeds: 3
workloads:
  mod: {task: modarith, budget_updates: 200, expected_best_updates: 60}
  xor: {task: xor, budget_updates: 400, expected_best_updates: 300}
arms:
  baseline: {method: baseline}
  grokalign: {method: grokalign, search: {lam: {low: 1.0e-5, high: 1.0e-2}}}
  stablemax: {method: baseline, loss: stablemax}
"""
BENCHMARK = "tiny-2"
MACHINE = {"cpu": "Test CPU 9000", "cpus": "2", "gpu": "none", "torch": "2.9.0", "threads": "1"}
COSTS = {
    "machine": "quiet test machine",
    "measure_updates": 20,
    "seconds_per_update": {
        "mod": {"baseline": 0.01, "grokalign": 0.02, "stablemax": 0.01},
        "xor": {"baseline": 0.001, "grokalign": 0.001},
    },
}
INF = math.inf
# tuning: each study's one trial's steps to the target (∞: a miss); stablemax cannot run xor (a scalar output)
TUNING = {
    ("mod", "baseline"): [100, 120, INF],  # median 120 → r = 2 (the best: grokalign's 60)
    ("mod", "grokalign"): [60, 50, 80],  # median 60 → r = 1; its median study is study 0 (60)
    ("mod", "stablemax"): [INF, INF, 200],  # median ∞: a miss
    ("xor", "baseline"): [300, 300, 300],  # 300 → r = 1
    ("xor", "grokalign"): [400, 1500, 1300],  # 1300 > 4 × 300: a miss under r_max
}
LAMS = [0.002, 0.0005, 0.008]  # grokalign's draw in studies 0, 1, 2
# open: one study of one trial each, drawn at lr 0.03 and weight decay 0.2 (and λ 0.001); no confirmation runs yet
OPEN = {("mod", "baseline"): 100, ("mod", "grokalign"): 100, ("mod", "stablemax"): 150}
OPEN |= {("xor", "baseline"): INF, ("xor", "grokalign"): 200}
# confirmation: each seed's steps to the target (None: censored at the budget)
CONFIRMED = {
    ("mod", "baseline"): [100, 120, 144],  # geometric mean 120
    ("mod", "grokalign"): [50, 60, 72],  # geometric mean 60: × 2 faster
    ("mod", "stablemax"): [None, None, None],  # censored at 200
    ("xor", "baseline"): [None, None, None],  # censored at 400
    ("xor", "grokalign"): [200, 220, 240],  # median 220: > 400 / 220 faster
}
# the open ruleset's confirmation: the tuned baseline, against which the verdicts are read
OPEN_CONFIRMED = {
    ("mod", "baseline"): [50, 60, 72],
    ("mod", "grokalign"): [50, 60, 72],  # × 1 in steps; × 0.5 in time (its update costs twice the baseline's)
    ("mod", "stablemax"): [None, None, None],  # censored at 200
    ("xor", "baseline"): [None, None, None],  # censored at 400
    ("xor", "grokalign"): [200, 220, 240],  # every seed before memorising
}
BUDGET = {"mod": 200, "xor": 400}
STOPPED = {("mod", "stablemax", 0): 150}  # the r_max stopper ended this miss at step 150 of its 200


def log_run(client, experiment, parent, coords, steps, drawn=None, before=False, benchmark_id=BENCHMARK, stopped=None):
    """`stopped`: the step at which the r_max stopper ended the trial (a miss), in epochs of 3 updates: its budget
    of 200 updates is 67 whole epochs, 201 updates."""
    tags = {
        **coords.tags("tiny"),
        KEY_TAG: f"{coords.workload}-{coords.arm}-{coords.phase}-{coords.study}-{coords.trial}",
        SWEEP_TAG: benchmark_id,
        TRIAL_TAG: str(coords.trial),
        DRAWN_TAG: json.dumps(drawn or {}),
        "status": "censored" if steps is None else "grokked",
        "grokked_before_memorised": str(before),
        PARENT_RUN_TAG: parent,
        **as_tags(MACHINE),
    } | ({STOPPED_BY_TAG: STOPPED_BY_R_MAX} if stopped else {})
    run = client.create_run(experiment, tags=tags).info.run_id
    ran = stopped or (BUDGET[coords.workload] if steps is None else steps)
    memorised = steps + 10 if before else 40  # a seed that reached the target before memorising memorised after
    metrics = {"steps": ran, "train_time_s": ran / 100, "steps_to_memorise": memorised, "time_to_memorise_s": 0.4}
    metrics["final_test_acc"] = 0.5 if steps is None else 0.96
    if steps is not None:
        metrics |= {"steps_to_grok": steps, "time_to_grok_s": steps / 100}
    params = []
    if stopped:
        metrics["epochs"], params = stopped / 3, [Param("max_epochs", str(math.ceil(BUDGET[coords.workload] / 3)))]
    client.log_batch(run, metrics=[Metric(name, float(value), 0, 0) for name, value in metrics.items()], params=params)


def log_parent(client, experiment, benchmark_id, suite_text):
    tags = {
        PARENT_TAG: "benchmark",
        "grokbench.benchmark": "tiny",
        SWEEP_TAG: benchmark_id,
        "grokbench.suite_sha256": hashlib.sha256(suite_text.encode()).hexdigest(),
        "grokbench.version": "abc1234",
        **as_tags(MACHINE),
    }
    parent = client.create_run(experiment, tags=tags).info.run_id
    client.log_text(parent, suite_text, "suite.yaml")
    client.log_text(parent, json.dumps(COSTS), "costs.json")
    return parent


@pytest.fixture(scope="module")
def store(tmp_path_factory, migrated_store) -> TrackingStore:
    """An older benchmark of the suite (one trial), then the one the tests read."""
    root = tmp_path_factory.mktemp("leaderboard")
    shutil.copy(migrated_store, root / "mlflow.db")
    store = TrackingStore(f"sqlite:///{root}/mlflow.db")
    experiment = store.prepare_experiment("grokbench/benchmark_tiny")
    client = store.client
    older = log_parent(client, experiment, "tiny-1", SUITE)
    for study in range(3):
        coords = Coordinates("mod", "baseline", "paper", "tuning", study, 0)
        log_run(client, experiment, older, coords, 90, benchmark_id="tiny-1")
    parent = log_parent(client, experiment, BENCHMARK, SUITE)
    for (workload, arm), times in TUNING.items():
        for study, steps in enumerate(times):
            drawn = {"lam": LAMS[study]} if arm == "grokalign" else {}
            coords = Coordinates(workload, arm, "paper", "tuning", study, 0)
            stopped = STOPPED.get((workload, arm, study))
            log_run(client, experiment, parent, coords, None if steps == INF else steps, drawn, stopped=stopped)
    for (workload, arm), steps in OPEN.items():
        drawn = {"lr": 0.03, "weight_decay": 0.2} | ({"lam": 0.001} if arm == "grokalign" else {})
        coords = Coordinates(workload, arm, "open", "tuning", 0, 0)
        log_run(client, experiment, parent, coords, None if steps == INF else steps, drawn)
    for (workload, arm), times in CONFIRMED.items():
        for seed, steps in enumerate(times):
            coords = Coordinates(workload, arm, "paper", "confirmation", 0, seed)
            log_run(client, experiment, parent, coords, steps, before=(arm, seed) == ("grokalign", 2))
    for (workload, arm), times in OPEN_CONFIRMED.items():
        for seed, steps in enumerate(times):
            coords = Coordinates(workload, arm, "open", "confirmation", 0, seed)
            log_run(client, experiment, parent, coords, steps, before=(workload, arm) == ("xor", "grokalign"))
    return store


@pytest.fixture(scope="module")
def built(store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("built")
    build_leaderboard(store.uri, "tiny", None, out, log_to_parent=False)
    return out


def test_the_scores_are_the_areas_worked_out_by_hand(built):
    board = pd.read_csv(built / "leaderboard.csv")
    first = ["ruleset", "measure", "rank", "method", "score", "workloads", "speedup_vs_baseline"]
    assert list(board.columns[:7]) == first
    assert {"speedup_ci_low", "speedup_ci_high", "speedup_test", "na_workloads"} <= set(board.columns)
    got = {
        (r.measure, r.method): (r.score, r.workloads, r.na_workloads)
        for r in board.itertuples()
        if r.ruleset == "paper"
    }
    # B = mean over the arm's workloads of (4 − r)₊ / 3
    assert got[("steps", "baseline")] == (pytest.approx((2 / 3 + 1) / 2), 2, 0)  # r = 2 on mod, 1 on xor
    assert got[("steps", "grokalign")] == (pytest.approx(0.5), 2, 0)  # r = 1 on mod, capped (4.33) on xor
    assert got[("steps", "stablemax")] == (0.0, 1, 1)  # a miss on mod, xor n/a
    # modelled: 120 × 0.01 = 60 × 0.02 s on mod, a tie at the best; xor's costs are equal, its ratios as in steps
    assert got[("modelled", "baseline")] == (pytest.approx(1.0), 2, 0)
    assert got[("modelled", "grokalign")] == (pytest.approx(0.5), 2, 0)
    assert list(board["method"][:3]) == ["baseline", "grokalign", "stablemax"]  # best first
    assert list(board["rank"][:3]) == [1, 2, 3]
    # open, steps: a tie at the best on mod (100) beside stablemax's 150 (r = 1.5); only grokalign reached xor
    opened = board[(board["ruleset"] == "open") & (board["measure"] == "steps")]
    assert list(opened["method"]) == ["grokalign", "stablemax", "baseline"]
    assert opened["score"].tolist() == pytest.approx([1.0, 2.5 / 3, 0.5])
    assert opened["rank"].tolist() == [1, 2, 3]
    assert "| paper | steps | 1 | baseline | 0.833 |" in (built / "leaderboard.md").read_text()
    assert board["ratio_xor"].isna().tolist()[2] and board["ratio_mod"][1] == 1.0


def test_arms_that_tie_share_a_rank_and_one_that_runs_nowhere_has_none():
    panel = {
        arm: ArmScore(arm, {"mod": 1.0}, (), score)
        for arm, score in [
            ("baseline", 0.3),
            ("grokalign", 0.8),
            ("grokfast", 0.1 + 0.2),
            ("stablemax", None),
            ("muon", 0.2),
        ]
    }
    assert {arm: rank(panel, arm) for arm in panel} == {
        "grokalign": 1,
        "baseline": 2,
        "grokfast": 2,  # 0.30000000000000004 ties with the baseline's 0.3: both second, and the next is fourth
        "muon": 4,
        "stablemax": None,
    }


def test_the_speed_ups_pool_the_workloads_and_show_a_censored_baseline_as_a_bound(built):
    board = pd.read_csv(built / "leaderboard.csv").query("ruleset == 'paper'").set_index(["measure", "method"])
    grokalign = board.loc[("steps", "grokalign")]
    # mod: 120 / 60 = 2 (every seed reached it); xor: the baseline missed: > 400 / 220; geometric mean, a bound
    assert grokalign["speedup_vs_baseline"] == pytest.approx(math.sqrt(2 * 400 / 220), rel=1e-5)
    assert grokalign["speedup_bound"] == ">" and grokalign["speedup_workloads"] == 2
    stablemax = board.loc[("steps", "stablemax")]  # its seeds missed at 200 on mod: < 120 / 200
    assert stablemax["speedup_vs_baseline"] == pytest.approx(0.6) and stablemax["speedup_bound"] == "<"
    assert board.loc[("steps", "baseline"), "speedup_vs_baseline"] == 1.0
    text = (built / "leaderboard.md").read_text()
    assert "> ×1.91" in text and "< ×0.60" in text
    for stamp in ("sha256 " + hashlib.sha256(SUITE.encode()).hexdigest(), "abc1234", "CPU Test CPU 9000", "threads 1"):
        assert stamp in text
    assert "quiet test machine over 20 updates" in text


def test_the_confirmed_tables_give_fractions_bounds_and_the_grokking_figures(built):
    confirmed = pd.read_csv(built / "confirmed_mod.csv", dtype=str)
    opened = confirmed.query("ruleset == 'open'").set_index("arm")
    assert opened.loc["baseline", "reached target"] == "3/3" and opened.loc["baseline", "steps_median"] == "60"
    mod = confirmed.query("ruleset == 'paper'").set_index("arm")
    assert mod.loc["baseline", "reached target"] == "3/3" and mod.loc["stablemax", "reached target"] == "0/3"
    assert mod.loc["stablemax", "steps: median [95 % CI]"] == "> 200"
    assert mod.loc["stablemax", "seconds: geo. mean [95 % CI]"] == "> 2"  # censored at 2 s
    assert float(mod.loc["baseline", "steps_geomean"]) == pytest.approx(120)
    assert (
        mod.loc["baseline", "steps_median"] == "120" and mod.loc["baseline", "memorise→target (median steps)"] == "80"
    )
    assert mod.loc["grokalign", "target before memorising"] == "1/3"
    assert float(mod.loc["grokalign", "steps_ratio"]) == pytest.approx(2.0)  # ratio of geometric means
    assert float(mod.loc["grokalign", "steps_ci_low"]) < 2 < float(mod.loc["grokalign", "steps_ci_high"])
    assert mod.loc["grokalign", "final test acc (median)"] == "0.960"
    xor = pd.read_csv(built / "confirmed_xor.csv", keep_default_na=False).query("ruleset == 'paper'").set_index("arm")
    assert xor.loc["baseline", "steps: median [95 % CI]"] == "> 400"
    assert xor.loc["grokalign", "speed-up (steps)"].startswith("> ×1.82")
    assert xor.loc["stablemax", "reached target"] == "n/a"


def test_the_tuned_settings_are_the_median_studys_winner_beside_the_default(built):
    tuned = pd.read_csv(built / "tuned_settings.csv")
    row = tuned[(tuned["workload"] == "mod") & (tuned["arm"] == "grokalign")].iloc[0]
    # studies took 60, 50, 80: sorted 50 (1), 60 (0), 80 (2), the middle one is study 0, drawn at λ = 0.002
    assert (row["setting"], row["tuned_value"], row["winner"]) == ("lam", 0.002, "study 0, trial 0")
    assert row["winner's steps"] == "60" and row["default_value"] > 0
    paper = tuned[tuned["ruleset"] == "paper"]
    assert set(paper[paper["arm"] == "baseline"]["setting"]) == {"(nothing tuned)"}
    # open: the shared ranges beside XOR's published SGD at lr 0.04, weight decay 0.1
    xor = tuned[(tuned["workload"] == "xor") & (tuned["arm"] == "baseline") & (tuned["ruleset"] == "open")]
    assert xor[["setting", "tuned_value", "default_value"]].values.tolist() == [
        ["lr", 0.03, 0.04],
        ["weight_decay", 0.2, 0.1],
    ]


def test_a_rebuild_is_byte_identical_names_no_local_path_and_replaces_the_parents_copy(store, built, tmp_path):
    written = build_leaderboard(store.uri, "benchmark_tiny", BENCHMARK, tmp_path)  # logged this time
    names = sorted(p.name for p in built.iterdir())
    assert names == sorted(p.name for p in written)
    assert "performance_profiles.png" in names and "leaderboard.tex" in names and "confirmed_xor.tex" in names
    for name in names:
        assert (built / name).read_bytes() == (tmp_path / name).read_bytes(), name
        if not name.endswith(".png"):
            assert str(tmp_path) not in (tmp_path / name).read_text() and "/tmp" not in (tmp_path / name).read_text()
    parent = store.parent_runs(store.experiment_id("grokbench/benchmark_tiny"), "benchmark")[-1]
    logged = store.text_artifacts(parent.info.run_id)
    assert logged[f"{FOLDER}/leaderboard.md"] == (tmp_path / "leaderboard.md").read_text()
    assert {f"{FOLDER}/{name}" for name in names} <= set(store._artifact_files(parent.info.run_id))


def test_the_command_picks_a_benchmark_and_refuses_a_missing_one_in_one_line(store, tmp_path, capsys):
    out = tmp_path / "older"
    assert main(["--tracking-uri", store.uri, "--benchmark-id", "tiny-1", "--out", str(out), "--no-log"]) == 0
    board = pd.read_csv(out / "leaderboard.csv")
    # its only finished trials: the baseline's on mod, 90 steps in each study (r = 1); xor: a miss
    assert board.query("method == 'baseline' and ruleset == 'paper'")["score"].tolist() == [0.5, 0.5]
    assert "Leaderboard: benchmark tiny (tiny-1)" in capsys.readouterr().out
    verdicts = pd.read_csv(out / "verdicts.csv", keep_default_na=False)  # no confirmation run: nothing to say
    assert verdicts["beats the tuned baseline"].tolist() == verdicts["vs paper baseline: steps"].tolist() == ["—"] * 3
    missing = tmp_path / "missing"
    assert main(["--tracking-uri", store.uri, "--benchmark-id", "tiny-9", "--out", str(missing), "--no-log"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no benchmark tiny-9" in err and "tiny-1, tiny-2" in err
    assert not missing.exists()


def test_the_pooled_speed_up_is_a_geometric_mean_with_a_t_interval_on_the_logs():
    # two workloads at × 2 and × 8: logs ln 2, ln 8; mean ln 4; sd ln 4 / √2, so the standard error is ln 2; with
    # 1 degree of freedom t(0.975) = 12.706205: the interval is 4 × 2^(∓ 12.706205)
    pooled, count = pooled_speed_up([SpeedUp(2.0), SpeedUp(8.0), SpeedUp(None)])
    assert count == 2 and pooled.ratio == pytest.approx(4.0)
    assert (pooled.ci_low, pooled.ci_high) == (
        pytest.approx(4 * 2**-12.706205, rel=1e-6),
        pytest.approx(4 * 2**12.706205, rel=1e-6),
    )
    bounded, _ = pooled_speed_up([SpeedUp(2.0), SpeedUp(8.0, bound=">")])
    assert (bounded.ratio, bounded.bound, bounded.ci_low) == (pytest.approx(4.0), ">", None)
    both_ways, _ = pooled_speed_up([SpeedUp(2.0, bound="<"), SpeedUp(8.0, bound=">")])
    assert both_ways.ratio is None
    one = SpeedUp(3.0, ci_low=1.5, ci_high=6.0)
    assert pooled_speed_up([one]) == (one, 1)  # one workload: its own interval


def test_a_bad_suite_or_cost_artifact_is_one_line_naming_the_benchmark():
    with pytest.raises(AnalysisError, match=r"^the suite.yaml of benchmark b-1: confirmation_seeds: missing") as err:
        _suite({"suite.yaml": "name: x\nrulesets: {}\n"}, "b-1", {})
    assert "/tmp" not in str(err.value) and "\n" not in str(err.value)
    suite = _suite({"suite.yaml": SUITE}, "b-1", {})
    costs = json.dumps(COSTS | {"seconds_per_update": {"mod": {"baseline": 0.01}}})
    with pytest.raises(
        AnalysisError, match=r"benchmark b-1: .*costs.json: no seconds per update for .*'mod', 'grokalign'"
    ):
        _costs({"costs.json": costs}, "b-1", suite)
    with pytest.raises(AnalysisError, match="costs.json: missing 'seconds_per_update'"):
        _costs({"costs.json": "{}"}, "b-1", suite)


def test_the_stopper_table_counts_what_a_stopped_miss_would_have_run(built):
    saved = pd.read_csv(built / "stopper.csv").set_index(["workload", "ruleset"])
    mod = saved.loc[("mod", "paper")]
    # baseline 100 + 120 + 200 (a miss at the budget), grokalign 60 + 50 + 80, stablemax 150 (stopped) + 200 + 200
    assert (mod["tuning trials"], mod["stopped"]) == (9, 1)
    # the stopped one at most to its own budget: 67 epochs of 3 updates
    assert (mod["updates_run"], mod["updates_without"]) == (1160, 1160 - 150 + 201)
    assert mod["saved (at most)"] == f"{1 - 1160 / 1211:.0%}"
    # modelled: × 0.01 s (baseline, stablemax) and 0.02 s (grokalign) an update
    assert mod["modelled_s_run"] == pytest.approx(4.2 + 3.8 + 5.5)
    assert mod["modelled_s_without"] == pytest.approx(4.2 + 3.8 + 5.5 + 51 * 0.01)
    assert saved.loc[("xor", "paper"), "stopped"] == 0
    assert saved.loc[("all", "all"), "updates_without"] - saved.loc[("all", "all"), "updates_run"] == 51
    assert (
        "an upper bound" in (built / "stopper.md").read_text()
        and "at 1 thread(s)" in (built / "stopper.md").read_text()
    )


def test_a_verdict_goes_no_further_than_its_interval_or_its_test():
    assert verdict(None) is None  # the baseline itself
    assert verdict(SpeedUp(None, p_value=0.001)) == "not shown"  # both censored: no ratio to point anywhere
    assert verdict(SpeedUp(1.8, ci_low=1.01, ci_high=3.2)) == "faster"
    assert verdict(SpeedUp(1.8, ci_low=0.99, ci_high=3.2, p_value=0.01)) == "not shown"  # the interval decides
    assert verdict(SpeedUp(0.5, ci_low=0.3, ci_high=0.9)) == "slower"
    # no interval: a bound that points one way, with the log-rank p below 0.05
    assert verdict(SpeedUp(1.8, bound=">", p_value=0.02)) == "faster"
    assert verdict(SpeedUp(1.8, bound=">", p_value=0.05)) == "not shown"
    assert verdict(SpeedUp(0.8, bound=">", p_value=0.001)) == "not shown"  # > 0.8: faster or slower alike
    assert verdict(SpeedUp(1.2, bound="<", p_value=0.001)) == "not shown"  # < 1.2: the same
    assert verdict(SpeedUp(0.3, bound="<", p_value=0.001)) == "slower"
    assert verdict(SpeedUp(2.0, p_value=0.03)) == "faster"  # a ratio of medians, neither censored
    assert verdict(SpeedUp(1.0, p_value=0.01)) == "not shown"  # a test that differs, with no side to call


def test_the_verdicts_read_each_arm_against_the_tuned_baseline_and_the_paper_one(built):
    rows = pd.read_csv(built / "verdicts.csv", keep_default_na=False).set_index(["workload", "arm"])
    assert list(rows.index) == [("mod", "grokalign"), ("mod", "stablemax"), ("xor", "grokalign")]  # no baseline
    mod = rows.loc[("mod", "grokalign")]
    # open: the same steps as the tuned baseline (× 1), and twice its cost an update: × 0.5 in time, the Welch
    # interval on logs spaced ln 1.2 apart (sd ln 1.2, 3 seeds each, 4 dof, t = 2.776): 0.5 × 1.2^(± 2.776 √(2/3))
    assert float(mod["open_steps_ratio"]) == pytest.approx(1.0)
    assert float(mod["open_modelled_ci_high"]) == pytest.approx(0.5 * 1.2 ** (2.7764451 * math.sqrt(2 / 3)), rel=1e-5)
    assert mod["open_steps_verdict"] == "not shown" and mod["open_modelled_verdict"] == "slower"
    # paper: × 2 in steps, [2 × 1.2^(∓ 2.267)] = [1.32, 3.02], above 1; in time × 1
    assert float(mod["paper_steps_ci_low"]) == pytest.approx(2 * 1.2 ** (-2.7764451 * math.sqrt(2 / 3)), rel=1e-5)
    assert mod["paper_steps_verdict"] == "faster" and mod["paper_modelled_verdict"] == "not shown"
    assert mod["beats the tuned baseline"] == "slower (time)" and mod["beats the paper baseline"] == "faster (steps)"
    assert mod["wins only under paper"] == "steps"
    # delays: 50, 60, 72 − 40 memorising steps, median 20, for the arm and the baseline alike
    assert (mod["grokking delay, tuned"], mod["delay, tuned: arm vs baseline (median steps)"]) == (
        "not shorter",
        "20 vs 20",
    )
    # paper: 50 − 40, 60 − 40 and 72 − 82 (the seed that reached the target before memorising, at 82) against
    # 100, 120, 144 − 40: a median delay of 10 against 80; one seed of three is not most of them
    assert (mod["grokking delay, paper"], mod["delay, paper: arm vs baseline (median steps)"]) == (
        "shorter median",
        "10 vs 80",
    )
    # xor: three seeds at 200, 220, 240 against a baseline censored at 400: > 400 / 220, no interval; the log-rank
    # statistic by hand (events at 200, 220, 240 with 6, 5, 4 at risk): O − E = 3 − (1/2 + 2/5 + 1/4) = 1.85,
    # V = 1/4 + 6/25 + 3/16, χ² = 1.85² / V = 5.0517, p = 0.0246 < 0.05: faster, and every seed before memorising
    xor = rows.loc[("xor", "grokalign")]
    assert float(xor["open_steps_ratio"]) == pytest.approx(400 / 220, rel=1e-5) and xor["open_steps_bound"] == ">"
    assert float(xor["open_steps_p_value"]) == pytest.approx(0.024593, rel=1e-3)
    assert xor["beats the tuned baseline"] == "faster (steps, time)" and xor["grokking delay, tuned"] == "removes it"
    assert xor["wins only under paper"] == "—" and xor["delay, tuned: arm vs baseline (median steps)"] == "-10 vs —"
    assert xor["grokking delay, paper"] == "the baseline never reached the target"
    # stablemax missed at 200 on every seed: < 60 / 200 by the same test: slower; it never reached the target
    stablemax = rows.loc[("mod", "stablemax")]
    assert stablemax["beats the tuned baseline"] == "slower (steps, time)" and stablemax["open_steps_bound"] == "<"
    assert stablemax["grokking delay, tuned"] == "—"
    assert "log-rank p < 0.05" in (built / "verdicts.md").read_text()
