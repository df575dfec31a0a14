"""`grokbench bench`: how each variant's rounds are sized and summarised."""

from grokbench.bench import VARIANTS, bench_json, epochs_per_round, format_bench, run_bench


def test_a_round_holds_8_cost_periods_of_a_variant_whose_cost_varies():
    assert epochs_per_round(1, 4) == 1
    assert epochs_per_round(4, 4) == 8  # 32 updates
    assert epochs_per_round(3, 4) == 6  # 24 updates: whole epochs, at least 8·K updates


def test_a_variant_whose_cost_varies_is_reported_as_its_mean_over_long_rounds(mnist_available):
    variants = {name: VARIANTS[name] for name in ("baseline", "grokalign[every8]")}
    report = run_bench(threads=1, rounds=2, warmup=0, variants=variants)
    every, baseline = report["timings"]["grokalign[every8]"], report["timings"]["baseline"]
    assert (every.statistic, every.updates_per_round) == ("mean", 64)
    assert (baseline.statistic, baseline.updates_per_round) == ("median", 4)
    assert bench_json(report)["grokalign[every8]"]["statistic"] == "mean"
    assert "mean over rounds of 64 updates" in format_bench(report)
