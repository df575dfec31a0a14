"""The score on a table of times worked out by hand: misses, a tie, an n/a, a time exactly r_max × the best and
one above it, an even study count; and U on a partial table as trials finish."""

import math

import pytest

from grokbench.benchmark.score import (
    TimeTable,
    area_score,
    profile_curve,
    ratios,
    rho,
    score_table,
    stop_factor,
    study_time,
    threshold_u,
)

INF = math.inf
R_MAX = 4.0

# (workload, arm) → study times; arms A, B, C on workloads w1..w4
TABLE = TimeTable(
    {
        # medians: A 12, B 24, C 12 → best 12 (A and C tie)
        ("w1", "A"): [10, 12, 14],
        ("w1", "B"): [20, 24, INF],
        ("w1", "C"): [12, 11, 30],
        # medians: A 170 (above 4 × 40 = 160: a miss), B 40; C is n/a → best 40
        ("w2", "A"): [100, 170, INF],
        ("w2", "B"): [30, 40, 50],
        ("w2", "C"): None,
        # medians: A 6, B 18, C 24 = exactly 4 × 6 (not a miss) → best 6
        ("w3", "A"): [5, 6, 7],
        ("w3", "B"): [15, 18, 21],
        ("w3", "C"): [20, 24, 28],
        # two studies, so the median averages: A (8+10)/2 = 9, B (2+6)/2 = 4, C (3+∞)/2 = ∞ → best 4
        ("w4", "A"): [8, 10],
        ("w4", "B"): [2, 6],
        ("w4", "C"): [3, INF],
    }
)

EXPECTED_RATIOS = {
    ("w1", "A"): 1.0,  # 12 / 12
    ("w1", "B"): 2.0,  # 24 / 12
    ("w1", "C"): 1.0,  # 12 / 12, the tie
    ("w2", "A"): INF,  # 170 / 40 = 4.25 > 4
    ("w2", "B"): 1.0,  # 40 / 40
    ("w2", "C"): None,  # n/a
    ("w3", "A"): 1.0,  # 6 / 6
    ("w3", "B"): 3.0,  # 18 / 6
    ("w3", "C"): 4.0,  # 24 / 6, exactly r_max
    ("w4", "A"): 2.25,  # 9 / 4
    ("w4", "B"): 1.0,  # 4 / 4
    ("w4", "C"): INF,  # ∞ / 4
}
# ρ(τ) = (workloads with r ≤ τ) / (workloads the arm runs): A and B over 4, C over 3 (w2 is n/a)
EXPECTED_RHO = {
    # τ:    A: r = 1, ∞, 1, 2.25   B: r = 2, 1, 3, 1   C: r = 1, 4, ∞
    1.0: {"A": 2 / 4, "B": 2 / 4, "C": 1 / 3},
    2.0: {"A": 2 / 4, "B": 3 / 4, "C": 1 / 3},
    2.5: {"A": 3 / 4, "B": 3 / 4, "C": 1 / 3},
    3.9: {"A": 3 / 4, "B": 4 / 4, "C": 1 / 3},
    4.0: {"A": 3 / 4, "B": 4 / 4, "C": 2 / 3},
}
# B = mean over the arm's workloads of (4 − r)₊ / (4 − 1)
EXPECTED_SCORE = {
    "A": (3 + 0 + 3 + 1.75) / 3 / 4,  # = 7.75 / 12 = 0.645833...
    "B": (2 + 3 + 1 + 3) / 3 / 4,  # = 9 / 12 = 0.75
    "C": (3 + 0 + 0) / 3 / 3,  # = 1 / 3
}


def test_ratios_by_hand():
    assert ratios(TABLE, R_MAX) == EXPECTED_RATIOS


def test_rho_and_score_by_hand():
    scores = score_table(TABLE, R_MAX)
    assert {arm: s.workloads for arm, s in scores.items()} == {"A": 4, "B": 4, "C": 3}
    assert scores["C"].refused == ("w2",)
    for tau, expected in EXPECTED_RHO.items():
        for arm, value in expected.items():
            assert rho(list(scores[arm].ratios.values()), tau) == pytest.approx(value, abs=1e-12), (tau, arm)
    for arm, value in EXPECTED_SCORE.items():
        assert scores[arm].score == pytest.approx(value, abs=1e-12), arm


def test_score_is_the_area_under_the_profile():
    """B against a fine Riemann sum of ρ over [1, r_max] (an independent check of the closed form)."""
    taus = [1 + 3 * (i + 0.5) / 30_000 for i in range(30_000)]
    for arm, s in score_table(TABLE, R_MAX).items():
        curve = profile_curve(list(s.ratios.values()), taus)
        assert curve.mean() == pytest.approx(EXPECTED_SCORE[arm], abs=1e-4), arm


def test_profile_curve_is_rho_on_the_grid():
    assert profile_curve([1.0, INF, 1.0, 2.25], [1.0, 2.0, 2.25, 4.0]).tolist() == [0.5, 0.5, 0.75, 0.75]


def test_all_arms_missing_a_workload_is_a_miss_for_each():
    table = TimeTable({("w", "A"): [INF, INF, INF], ("w", "B"): [INF]})
    assert ratios(table, R_MAX) == {("w", "A"): INF, ("w", "B"): INF}
    assert area_score([INF], R_MAX) == 0.0


def test_an_arm_refused_everywhere_has_no_score():
    scores = score_table(TimeTable({("w", "A"): [3], ("w", "B"): None}), R_MAX)
    assert scores["B"].score is None and scores["B"].workloads == 0
    assert scores["A"].score == 1.0  # (4 − 1) / (4 − 1)


@pytest.mark.parametrize(
    ("studies", "message"),
    [
        ({("w1", "A"): [1], ("w2", "B"): [1]}, "no entry for"),
        ({("w", "A"): []}, "has no studies"),
        ({("w", "A"): [math.nan]}, "has a time nan"),
        ({("w", "A"): [-1.0]}, "has a time -1.0"),
    ],
)
def test_bad_tables_are_refused(studies, message):
    with pytest.raises(ValueError, match=message):
        TimeTable(studies)


def test_r_max_must_exceed_one():
    with pytest.raises(ValueError, match="above 1"):
        ratios(TABLE, 1.0)


def test_study_time_is_the_fastest_trial():
    assert study_time([30, INF, 12]) == 12
    assert study_time([INF, INF]) == INF
    assert study_time([]) == INF


def test_u_on_a_partial_table_by_hand():
    # arm → each study's finished trials (∞: a finished miss; []: none finished yet), three studies
    finished = {
        "A": [[12, INF], [], [9]],  # study times 12, ∞, 9 → median 12
        "B": [[20], [15], []],  # 20, 15, ∞ → median 20
        "C": [[], [], []],  # ∞, ∞, ∞ → ∞
    }
    assert threshold_u(finished) == 12  # min(12, 20, ∞)
    finished["A"][1].append(30)  # A: 12, 30, 9 → 12
    finished["B"][2].append(5)  # B: 20, 15, 5 → 15
    assert threshold_u(finished) == 12
    finished["A"][1].append(10)  # A: 12, 10, 9 → 10
    assert threshold_u(finished) == 10
    assert threshold_u({"A": [[4], []]}) == INF  # two studies: (4 + ∞) / 2
    assert threshold_u({}) == INF


def test_the_stopper_factor_doubles_for_an_even_study_count():
    # odd S: the median is one study's time; even S: the mean of two, so one of them may reach 2 × r_max × best
    assert [stop_factor(s) for s in (1, 2, 3, 4, 5)] == [1, 2, 1, 2, 1]
