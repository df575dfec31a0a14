"""`grokbench bench` times the newer methods beside the baseline, in the same interleaved rounds."""

from grokbench.bench import bench_json, format_bench, run_bench

NEW = ("orthograd", "muon", "norm_constraint")


def test_bench_lists_the_newer_methods_with_their_cost_against_the_baseline():
    report = run_bench(threads=1, rounds=2, warmup=0, task="xor")
    for name in NEW:
        timing = report["timings"][name]
        assert timing.ms_per_update > 0 and timing.ratio_to_baseline > 0
        assert timing.updates_per_round == report["timings"]["baseline"].updates_per_round
    lines = format_bench(report).splitlines()
    assert all(any(line.startswith(name + " ") for line in lines) for name in NEW)
    assert set(NEW) <= set(bench_json(report))
