"""analysis.stats against scipy's own answers, data drawn with known answers, and small examples worked by hand."""

import math

import numpy as np
import pytest
from scipy import stats

from analysis.stats import AFT, GEOMETRIC, LOGRANK, MEDIANS, WELCH, Sample, aft_time_ratio, cell, km_median, speed_up


def censored_data(values, observed):
    values, observed = np.asarray(values, dtype=float), np.asarray(observed, dtype=bool)
    return stats.CensoredData(uncensored=values[observed], right=values[~observed])


def scipy_km_median(values, observed):
    """The median read off scipy's Kaplan–Meier survival function: the first time it is 1/2 or below."""
    sf = stats.ecdf(censored_data(values, observed)).sf
    below = np.flatnonzero(sf.probabilities <= 0.5)
    return float(sf.quantiles[below[0]]) if below.size else None


def test_a_three_against_three_example_worked_by_hand():
    # baseline 8, 16, 32 s and method 2, 4, 8 s: geometric means 16 and 4, so the speed-up is 16 / 4 = 4.
    # On log2 scale the rows are 3, 4, 5 and 1, 2, 3: difference 2, each sd 1, se = sqrt(1/3 + 1/3) = 0.8165;
    # Welch's df = (2/3)² / ((1/3)²/2 + (1/3)²/2) = 4, t = 2 / 0.8165 = 2.449 (= √6), t(4, 0.975) = 2.7764, so
    # the interval is 2^(2 ± 2.7764·0.8165) = 2^-0.2669 … 2^4.2669 = 0.831 … 19.25, and p = 2·P(T₄ > √6) = 0.0705.
    seeds = [0, 1, 2]
    s = speed_up(Sample([8.0, 16.0, 32.0], [True] * 3, seeds), Sample([2.0, 4.0, 8.0], [True] * 3, seeds))
    assert (s.estimand, s.test, s.bound) == (GEOMETRIC, WELCH, "")
    assert s.ratio == pytest.approx(4.0)
    half_width = 2.7764451 * math.sqrt(2 / 3)
    assert s.ci_low == pytest.approx(2 ** (2 - half_width), rel=1e-6)
    assert s.ci_high == pytest.approx(2 ** (2 + half_width), rel=1e-6)
    assert (round(s.ci_low, 3), round(s.ci_high, 2)) == (0.831, 19.25)
    assert s.p_value == pytest.approx(0.0705, abs=5e-5)
    assert s.median_ratio == 4.0  # 16 / 4, the medians beside the estimand
    # the paper's form: seed by seed 8/2 = 16/4 = 32/8 = 4, so mean 4 and std 0 over 3 pairs
    assert (s.per_seed_mean, s.per_seed_std, s.pairs) == (4.0, 0.0, 3)


def test_per_seed_ratios_pair_trials_by_seed_number_not_by_order():
    # method seeds 1, 0, 2 took 2, 4, 8 s: per seed 8/4 = 2, 16/2 = 8, 32/8 = 4 → mean 14/3, std √(28/3) = 3.055
    s = speed_up(Sample([8.0, 16.0, 32.0], [True] * 3, [0, 1, 2]), Sample([2.0, 4.0, 8.0], [True] * 3, [1, 0, 2]))
    assert s.ratio == pytest.approx(4.0)  # the geometric means do not depend on the pairing
    assert s.per_seed_mean == pytest.approx(14 / 3) and s.per_seed_std == pytest.approx(math.sqrt(28 / 3))
    # seed 5 has no partner: only seeds 0 and 1 pair, 8/2 and 16/4
    s = speed_up(Sample([8.0, 16.0, 32.0], [True] * 3, [0, 1, 2]), Sample([2.0, 4.0, 8.0], [True] * 3, [0, 1, 5]))
    assert (s.per_seed_mean, s.pairs) == (4.0, 2)
    # a row that repeats a seed cannot be paired
    s = speed_up(Sample([8.0, 16.0], [True] * 2, [0, 0]), Sample([2.0, 4.0], [True] * 2, [0, 1]))
    assert (s.per_seed_mean, s.pairs) == (None, 0) and s.ratio == pytest.approx(4.0)


def test_the_welch_interval_is_scipys_own_on_log_values():
    rng = np.random.default_rng(1)
    base, method = rng.lognormal(6.0, 0.3, 5), rng.lognormal(4.5, 0.2, 4)
    s = speed_up(Sample(base, [True] * 5), Sample(method, [True] * 4))
    result = stats.ttest_ind(np.log(base), np.log(method), equal_var=False)
    interval = result.confidence_interval(0.95)
    assert s.ci_low == pytest.approx(math.exp(interval.low), rel=1e-12)
    assert s.ci_high == pytest.approx(math.exp(interval.high), rel=1e-12)
    assert s.p_value == pytest.approx(result.pvalue, rel=1e-12)
    assert s.ratio == pytest.approx(stats.gmean(base) / stats.gmean(method), rel=1e-12)
    assert s.ci_low < s.ratio < s.ci_high


def test_lifelines_log_rank_p_equals_scipys():
    rng = np.random.default_rng(2)
    for _ in range(5):
        base, method = rng.lognormal(5.0, 0.5, 8), rng.lognormal(4.6, 0.5, 7)
        budgets = rng.uniform(100, 250, 15)  # censoring times that differ from trial to trial
        values, observed = np.minimum(np.r_[base, method], budgets), np.r_[base, method] <= budgets
        b, m = Sample(values[:8], observed[:8]), Sample(values[8:], observed[8:])
        assert not observed.all()
        ours = speed_up(b, m)
        assert ours.test == LOGRANK
        theirs = stats.logrank(censored_data(*b[:2]), censored_data(*m[:2])).pvalue
        assert ours.p_value == pytest.approx(theirs, rel=1e-9)


def test_the_aft_time_ratio_recovers_a_known_log_normal_ratio():
    # the baseline takes 3× the method's time (log-normal, σ = 0.4); both rows are censored at a budget of 200
    # or earlier at random, which stops about 40% of the baseline's trials and 4% of the method's
    rng = np.random.default_rng(3)
    base, method = 3 * rng.lognormal(4.0, 0.4, 200), rng.lognormal(4.0, 0.4, 200)
    budgets = np.minimum(200.0, rng.uniform(20, 1500, 400))
    times = np.r_[base, method]
    values, observed = np.minimum(times, budgets), times <= budgets
    assert 0.3 < 1 - observed[:200].mean() < 0.5 and 0 < 1 - observed[200:].mean() < 0.1
    s = speed_up(Sample(values[:200], observed[:200]), Sample(values[200:], observed[200:]))
    assert (s.estimand, s.test) == (AFT, LOGRANK)
    assert s.ci_low < 3.0 < s.ci_high
    assert 2.7 < s.ratio < 3.3 and s.ci_high / s.ci_low < 1.4
    assert s.p_value < 1e-6
    # dropping the censored trials instead would bias the ratio towards 1: the slow baseline runs are the ones lost
    naive = stats.gmean(values[:200][observed[:200]]) / stats.gmean(values[200:][observed[200:]])
    assert naive < s.ci_low


def test_without_censoring_the_aft_ratio_is_the_ratio_of_geometric_means():
    # a log-normal AFT fit on uncensored data is least squares on log time: the same estimand as the Welch case
    rng = np.random.default_rng(4)
    base, method = Sample(rng.lognormal(5, 0.3, 6), [True] * 6), Sample(rng.lognormal(4, 0.3, 5), [True] * 5)
    ratio, low, high = aft_time_ratio(base, method)
    assert ratio == pytest.approx(speed_up(base, method).ratio, rel=1e-4)
    assert low < ratio < high


def test_the_km_median_is_the_one_read_off_scipys_ecdf():
    rng = np.random.default_rng(5)
    checked_bound = checked_median = 0
    for _ in range(40):
        n = int(rng.integers(2, 10))
        times = np.round(rng.lognormal(3, 0.6, n))  # rounded: ties, also between events and censorings
        budgets = np.round(rng.uniform(10, 40, n))
        values, observed = np.minimum(times, budgets), times <= budgets
        if not observed.any():
            continue
        expected = scipy_km_median(values, observed)
        assert km_median(values, observed) == expected
        c = cell(values.tolist(), observed.tolist())
        if observed.all():
            continue
        if expected is None:
            assert c.median is None and c.exceeds == values.max()
            checked_bound += 1
        else:
            assert c.median == expected and c.exceeds is None
            checked_median += 1
    assert checked_bound and checked_median


def test_km_median_by_hand():
    # 5 runs: events at 2, 4; censored at 3, 5, 6. S(2)=4/5; at 4: at risk 3 (4, 5c, 6c) → S=4/5·2/3=0.533
    assert km_median([2, 3, 4, 5, 6], [True, False, True, False, False]) is None
    # events at 1, 2, 3 of 4 runs, one censored at 10: S(1)=3/4, S(2)=1/2 → median 2
    assert km_median([1, 2, 3, 10], [True, True, True, False]) == 2
    # censored at 1 removes a run from the risk set: at 2, 3 at risk → S=2/3; at 3 → 1/3 → median 3
    assert km_median([1, 2, 3, 4], [False, True, True, True]) == 3
    assert km_median([5, 7, 9], [True, True, True]) == 7


def test_differing_censoring_times_give_a_median_where_fewer_than_half_grokked():
    # 2 of 5 grokked, but two runs were censored early (at 1 and 2): at 3, 3 at risk → S=2/3; at 4, 2 at risk →
    # S=1/3, so the median is 4, not "above the budget"
    c = cell([1.0, 2.0, 3.0, 4.0, 10.0], [False, False, True, True, False])
    assert (c.median, c.exceeds, c.median_is_km) == (4.0, None, True)
    # one of three grokked (at 5), the others followed to 50 and 80: S stays at 2/3, so the median lies beyond
    # the last time followed, 80, not merely beyond the first censoring (50)
    c = cell([5.0, 50.0, 80.0], [True, False, False])
    assert (c.median, c.exceeds) == (None, 80.0)


def test_cells_and_speed_up_direction():
    c = cell([10.0, 20.0, 30.0], [True, True, True])
    assert (c.mean, c.median, c.n, c.grokked) == (20.0, 20.0, 3, 3) and math.isclose(c.std, 10.0)
    censored = cell([10.0, 20.0, 100.0], [True, True, False])
    assert censored.median_is_km and censored.median == 20.0 and censored.exceeds is None
    fast = speed_up(([40.0, 60.0, 80.0], [True] * 3), ([10.0, 20.0, 30.0], [True] * 3))
    assert fast.ratio == pytest.approx(32 ** (1 / 3))  # (40·60·80 / 10·20·30)^(1/3)
    assert fast.ci_low <= fast.ratio <= fast.ci_high and fast.median_ratio == 3.0
    slow = speed_up(([10.0, 20.0, 30.0], [True] * 3), ([40.0, 60.0, 80.0], [True] * 3))
    assert slow.ratio == pytest.approx(32 ** (-1 / 3))  # slower shows below 1, never inverted


def test_a_row_with_fewer_than_two_grokked_trials_gets_a_bound_and_a_log_rank_test():
    # the baseline never grokked: at least 100 / 20 (the method's median), with no interval
    bound = speed_up(([100.0, 100.0, 100.0], [False] * 3), ([10.0, 20.0, 30.0], [True] * 3))
    assert (bound.bound, bound.ratio, bound.estimand, bound.ci_low) == ("≥", 5.0, MEDIANS, None)
    assert "fewer than 2 grokked" in bound.note
    expected = stats.logrank(censored_data([100.0] * 3, [False] * 3), censored_data([10.0, 20.0, 30.0], [True] * 3))
    assert bound.p_value == pytest.approx(expected.pvalue)
    upper = speed_up(([10.0, 20.0, 30.0], [True] * 3), ([50.0, 50.0, 50.0], [False] * 3))
    assert upper.bound == "≤" and upper.ratio == pytest.approx(0.4)  # never grokked: at most 20 / 50
    # one event a row, but both medians known (S falls to 1/2 at the event): a ratio of medians, not a bound
    medians = speed_up(([40.0, 90.0], [True, False]), ([10.0, 90.0], [True, False]))
    assert (medians.ratio, medians.bound, medians.estimand, medians.ci_low) == (4.0, "", MEDIANS, None)
    assert speed_up(([100.0] * 2, [False] * 2), ([90.0] * 2, [False] * 2)).ratio is None  # both only bounds
    # both medians censored, but the method's row has an event the baseline's has not: no ratio, still a test
    # (the 100 000-update MSE adversarial row: 1 of 3 grokked, the baseline 0 of 3)
    untested = speed_up(([100.0] * 3, [False] * 3), ([60.0, 100.0, 100.0], [True, False, False]))
    expected = stats.logrank(
        censored_data([100.0] * 3, [False] * 3), censored_data([60.0, 100.0, 100.0], [True, False, False])
    )
    assert untested.ratio is None and untested.test == LOGRANK
    assert untested.p_value == pytest.approx(expected.pvalue)
    assert speed_up(([100.0] * 2, [False] * 2), ([90.0] * 2, [False] * 2)).p_value is None  # no event: no test


def test_a_censored_trial_switches_to_the_aft_ratio_and_the_log_rank_test():
    mixed = speed_up(([40.0, 60.0, 80.0], [True] * 3), ([10.0, 20.0, 90.0], [True, True, False]))
    assert (mixed.estimand, mixed.test) == (AFT, LOGRANK)
    assert mixed.ci_low < mixed.ratio < mixed.ci_high and mixed.per_seed_mean is None


def test_no_ratio_or_no_test_where_the_data_cannot_give_one():
    assert speed_up(([0.0, 10.0], [True] * 2), ([5.0, 6.0], [True] * 2)).ratio is None
    assert speed_up(([], []), ([5.0, 6.0], [True] * 2)).ratio is None
    one = speed_up(([40.0], [True]), ([10.0, 20.0], [True] * 2))
    assert one.ratio == pytest.approx(40 / math.sqrt(200)) and one.p_value is None and one.ci_low is None
    same = speed_up(([40.0, 40.0], [True] * 2), ([10.0, 10.0], [True] * 2))  # no spread: no test, not p = 0
    assert same.ratio == pytest.approx(4.0) and same.p_value is None and same.ci_low is None
