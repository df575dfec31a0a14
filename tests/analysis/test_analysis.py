"""analysis.tables on runs logged to a real SQLite MLflow store with known figures, checked by hand."""

import gzip
import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from stores import SWEEP, log_trial

from analysis.runs import at_budget, budget_note, independent_settings, load_runs
from analysis.stats import Sample, aft_time_ratio
from analysis.tables import main as tables_main
from grokbench.sweep.mlflow_store import TrackingStore


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store with a known Table 1: cross-entropy, three seeds per method."""
    path = tmp_path_factory.mktemp("analysis") / "mlflow.db"
    uri = f"sqlite:///{path}"
    client = mlflow.MlflowClient(uri)
    # artifacts (of the analysis runs that analysis.tables logs) beside the database, not in the working directory
    experiment_id = TrackingStore(uri).prepare_experiment("grokbench/mnist")
    # baseline: grokked at 400/600/800 steps, 40/60/80 s
    for seed, (steps, t) in enumerate([(400, 40.0), (600, 60.0), (800, 80.0)]):
        log_trial(client, experiment_id, "baseline", "ce", seed, "grokked", steps, t)
    # grokalign: 100/200/300 steps, 10/20/30 s → ×3 in median time (60 / 20)
    for seed, (steps, t) in enumerate([(100, 10.0), (200, 20.0), (300, 30.0)]):
        log_trial(client, experiment_id, "grokalign", "ce", seed, "grokked", steps, t, lam=1e-3)
    # grokfast: one grokked (200 steps, 20 s), two censored at the budget (1000 steps, 100 s)
    log_trial(client, experiment_id, "grokfast", "ce", 0, "grokked", 200, 20.0, lam=0.1)
    log_trial(client, experiment_id, "grokfast", "ce", 1, "censored", 0, 0, lam=0.1)
    log_trial(client, experiment_id, "grokfast", "ce", 2, "censored", 0, 0, lam=0.1)
    # adversarial: grokked twice, one diverged (counted apart)
    log_trial(client, experiment_id, "adversarial", "ce", 0, "grokked", 500, 50.0, lam=1.0)
    log_trial(client, experiment_id, "adversarial", "ce", 1, "grokked", 700, 70.0, lam=1.0)
    log_trial(client, experiment_id, "adversarial", "ce", 2, "diverged", 0, 0, lam=1.0, curve=False)
    return path


def read_csv_table(path):
    import pandas as pd

    return pd.read_csv(path, dtype=str, keep_default_na=False).set_index("Method")


def test_table1_equals_hand_computed_values(store, tmp_path):
    shutil.copy(store, tmp_path / "mlflow.db")
    out = tmp_path / "out"
    assert tables_main(["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--out", str(out)]) == 0
    table = read_csv_table(out / "table1_ce.csv")
    assert list(table.index) == ["Baseline", "GrokAlign", "Grokfast", "Adversarial Training"]
    assert table.loc["Baseline", "grokked"] == "3/3"
    assert table.loc["Baseline", "Number of Steps"] == "600 ± 2e+02 (med 600)"
    assert table.loc["GrokAlign", "Absolute Time (s)"] == "20 ± 10 (med 20)"
    # speed-up = baseline ÷ method, a ratio of geometric means: (400·600·800 / 100·200·300)^(1/3) = 32^(1/3) = 3.17
    # in steps and in time, never shown inverted; its interval and p are those of one Welch test on log time
    assert table.loc["GrokAlign", "speed-up (steps)"].startswith("×3.17 [")
    welch = stats.ttest_ind(np.log([40, 60, 80]), np.log([10, 20, 30]), equal_var=False)
    low, high = np.exp(welch.confidence_interval(0.95))
    assert table.loc["GrokAlign", "speed-up (time)"] == f"×3.17 [{low:.2f}, {high:.2f}] p={welch.pvalue:.2g}"
    assert (table.loc["GrokAlign", "time_estimand"], table.loc["GrokAlign", "time_test"]) == (
        "ratio of geometric means",
        "Welch t-test on log values",
    )
    assert float(table.loc["GrokAlign", "time_ci_low"]) == pytest.approx(low, rel=1e-5)
    assert float(table.loc["GrokAlign", "time_median_ratio"]) == 3.0  # 60 / 20, beside the estimand
    # the paper's form, seed by seed: steps 400/100, 600/200, 800/300 = 4, 3, 2.67 → 3.22 ± 0.69; phase times
    # (time − 1 s) 39/9, 59/19, 79/29 → 3.39 ± 0.84
    per_seed = table.loc["GrokAlign", "per-seed speed-up (steps / time / phase)"]
    assert per_seed == "3.22 ± 0.69 / 3.22 ± 0.69 / 3.39 ± 0.84"
    # censored: one of three grokked, the others followed to 100 s: the KM curve stays at 2/3 → "> 100"
    assert table.loc["Grokfast", "grokked"] == "1/3"
    assert table.loc["Grokfast", "Absolute Time (s)"] == "> 100 (2 of 3 censored)"
    # one grokked trial is too few to fit: the speed-up is a bound on the ratio of medians, at most 60 / 100, with
    # no interval, tested by the log-rank test
    logrank = stats.logrank(
        stats.CensoredData(uncensored=[40, 60, 80]), stats.CensoredData(uncensored=[20], right=[100, 100])
    ).pvalue
    assert table.loc["Grokfast", "speed-up (time)"] == f"≤ ×0.60 p={logrank:.2g}"
    assert (table.loc["Grokfast", "time_bound"], table.loc["Grokfast", "time_test"]) == ("≤", "log-rank test")
    assert table.loc["Grokfast", "per-seed speed-up (steps / time / phase)"] == "—"
    # the diverged adversarial trial is counted apart, not in n/N
    assert table.loc["Adversarial Training", "grokked"] == "2/2" and table.loc["Adversarial Training", "n"] == "2"
    assert table.loc["Adversarial Training", "diverged/failed"] == "1"
    # (400·600·800)^(1/3) / (500·700)^(1/2) = 576.9 / 591.6; per seed 400/500 and 600/700 (seed 2 diverged)
    assert table.loc["Adversarial Training", "speed-up (steps)"].startswith("×0.98 [")
    assert table.loc["Adversarial Training", "steps_pairs"] == "2"
    # grokking phase time = time to grok − time to memorise (1 s here)
    assert table.loc["Baseline", "Grokking Phase Time (s)"] == "59 ± 20 (med 59)"
    markdown = (out / "table1_ce.md").read_text()
    assert "Baseline 3, GrokAlign 3, Grokfast 3, Adversarial Training 2" in markdown  # n per row
    for named in ("ratio of geometric means", "Welch t-test on log values", "log-rank test", "paired by seed"):
        assert named in markdown
    assert "AFT" not in markdown  # no row was fitted, so no footnote says so
    latex = (out / "table1_ce.tex").read_text()
    assert r"{\footnotesize speed-up = baseline $\div$ method" in latex and "ratio of geometric means" in latex
    assert "Geometry" in (out / "geometry.md").read_text()


def test_censored_rows_get_the_aft_ratio_and_the_log_rank_test_and_cross_entropy_comes_first(store, tmp_path, capsys):
    shutil.copy(store, tmp_path / "mlflow.db")
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name("grokbench/mnist").experiment_id
    # MSE: the baseline grokked at 80 and 90 s, its third seed was censored at 100 s; GrokAlign grokked at 30, 40,
    # 50 s; Grokfast never grokked
    for seed, status, steps in ((0, "grokked", 800), (1, "grokked", 900), (2, "censored", 0)):
        log_trial(client, experiment_id, "baseline", "mse", seed, status, steps, steps / 10)
    for seed, steps in enumerate([300, 400, 500]):
        log_trial(client, experiment_id, "grokalign", "mse", seed, "grokked", steps, steps / 10, lam=1e-4)
    for seed in range(3):
        log_trial(client, experiment_id, "grokfast", "mse", seed, "censored", 0, 0, lam=0.1)
    out = tmp_path / "out"
    assert tables_main(["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.index("Table 1 — Cross-entropy") < printed.index("Table 1 — MSE")  # the paper's order
    table = read_csv_table(out / "table1_mse.csv")
    assert table.loc["Baseline", "Absolute Time (s)"] == "KM med 90 (1 censored)"  # S(80) = 2/3, S(90) = 1/3
    # both rows have 2 or more grokked trials: a log-normal AFT fit, the same one analysis.stats makes
    ratio, low, high = aft_time_ratio(
        Sample([80.0, 90.0, 100.0], [True, True, False]), Sample([30.0, 40.0, 50.0], [True] * 3)
    )
    assert float(table.loc["GrokAlign", "time_ratio"]) == pytest.approx(ratio, rel=1e-5) and low < ratio < high
    assert (table.loc["GrokAlign", "time_estimand"], table.loc["GrokAlign", "time_test"]) == (
        "log-normal AFT time ratio",
        "log-rank test",
    )
    assert table.loc["GrokAlign", "speed-up (time)"].startswith(f"×{ratio:.2f} [{low:.2f}, {high:.2f}] p=")
    assert table.loc["GrokAlign", "speed-up (time)"].endswith("†")
    # Grokfast never grokked: at most the baseline's KM median over Grokfast's last time followed, 90 / 100
    assert table.loc["Grokfast", "speed-up (time)"].startswith("≤ ×0.90 p=")
    markdown = (out / "table1_mse.md").read_text()
    for named in ("log-normal AFT time ratio", "log-rank test", "Baseline 3, GrokAlign 3, Grokfast 3"):
        assert named in markdown
    assert "Welch" not in markdown


def test_geometry_has_a_row_per_lambda_where_a_method_ran_at_several(store, tmp_path):
    shutil.copy(store, tmp_path / "mlflow.db")
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name("grokbench/mnist").experiment_id
    for seed, steps in zip([10, 11, 12], [50, 60, 70], strict=False):  # other seeds: trial keys here name no λ
        log_trial(client, experiment_id, "grokalign", "ce", seed, "grokked", steps, steps / 10, lam=1e-2)
    out = tmp_path / "out"
    assert tables_main(["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--out", str(out)]) == 0
    geometry = read_csv_table(out / "geometry.csv")
    # centroid alignment at grokking is 0.1 + step / 1e4: medians of 100/200/300 and of 50/60/70 steps
    assert geometry.loc["GrokAlign (λ=0.001)", "centroid_alignment @grok"] == "0.12"
    assert geometry.loc["GrokAlign (λ=0.01)", "centroid_alignment @grok"] == "0.106"
    assert geometry.loc["Baseline", "centroid_alignment @grok"] == "0.16"  # one λ: no label


def test_every_trial_has_a_row_with_its_speed_per_update(store, tmp_path, capsys):
    shutil.copy(store, tmp_path / "mlflow.db")
    out = tmp_path / "out"
    assert tables_main(["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--out", str(out)]) == 0
    assert "Every trial: 12 rows" in capsys.readouterr().out  # listed in the files, not printed
    import pandas as pd

    rows = pd.read_csv(out / "trials.csv", dtype=str, keep_default_na=False)
    assert len(rows) == 12 and list(rows["method"][:3]) == ["Baseline"] * 3  # the paper's row order
    by_key = rows.set_index(["method", "seed"])
    assert by_key.loc[("Baseline", "1"), "steps to grok"] == "600"
    assert by_key.loc[("Baseline", "1"), "ms/update"] == "100.0"  # 60 s over 600 updates
    censored = by_key.loc[("Grokfast", "2")]
    assert (censored["status"], censored["steps to grok"], censored["updates run"]) == ("censored", "—", "1,000")
    assert by_key.loc[("Adversarial Training", "2"), "status"] == "diverged"


@pytest.mark.slow  # every figure in two formats: seconds
def test_figures_are_written_and_not_empty(store, tmp_path):
    shutil.copy(store, tmp_path / "mlflow.db")
    out = tmp_path / "figs"
    assert (
        tables_main(
            ["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--out", str(out), "--format", "csv", "--figures"]
        )
        == 0
    )
    for name in ("accuracy_vs_steps", "accuracy_vs_seconds", "geometry"):
        for suffix in ("png", "pdf"):
            assert (out / f"{name}.{suffix}").stat().st_size > 5000


def test_bad_arguments_give_clear_errors(store, tmp_path, capsys):
    shutil.copy(store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert tables_main(["--tracking-uri", uri, "--experiment", "nope"]) == 2
    assert "no experiment grokbench/nope" in capsys.readouterr().err
    assert tables_main(["--tracking-uri", uri, "--sweep", "missing-sweep"]) == 2
    assert "no runs in sweep missing-sweep" in capsys.readouterr().err
    assert tables_main(["--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}"]) == 2
    assert "no MLflow store at" in capsys.readouterr().err
    assert tables_main(["--tracking-uri", uri, "--format", "xlsx"]) == 2
    assert "--format: xlsx not among md, tex, csv" in capsys.readouterr().err
    client = mlflow.MlflowClient(uri)
    client.create_experiment("grokbench/empty")
    assert tables_main(["--tracking-uri", uri, "--experiment", "empty"]) == 2
    assert "no runs in grokbench/empty" in capsys.readouterr().err


def test_export_then_import_recreates_the_runs_exactly_and_once(tmp_path, migrated_store, capsys):
    from grokbench.cli import main as cli
    from grokbench.sweep.archive import IMPORTED_TAG
    from grokbench.sweep.keys import KEY_TAG, SWEEP_TAG

    uris = {}
    for name in ("source", "copy"):
        shutil.copy(migrated_store, tmp_path / f"{name}.db")
        uris[name] = f"sqlite:///{tmp_path / name}.db"
    source = mlflow.MlflowClient(uris["source"])
    experiment_id = TrackingStore(uris["source"]).prepare_experiment("grokbench/mnist")
    for seed, (steps, t) in enumerate([(400, 40.0), (600, 60.0)]):
        log_trial(source, experiment_id, "baseline", "ce", seed, "grokked", steps, t)
    log_trial(source, experiment_id, "grokalign", "ce", 0, "censored", 0, 0, lam=1e-3)
    log_trial(source, experiment_id, "grokalign", "ce", 1, "failed", 0, 0, lam=1e-3, curve=False)
    source.create_run(experiment_id, tags={KEY_TAG: "still-running", "status": "running"})  # no outcome: left out
    first = source.search_runs([experiment_id], filter_string=f"tags.`{KEY_TAG}` = 'baseline-ce-0'")[0]
    source.log_text(first.info.run_id, '{"lr": 0.001}', "config.json")
    best = {f"best.{SWEEP}.grokalign.lam": "0.0042", f"best.{SWEEP}.grokalign.weight_decay": "1.5"}
    TrackingStore(uris["source"]).set_experiment_tags(experiment_id, {**best, "unrelated": "stays behind"})
    # an earlier import into the copy that stopped part-way: replaced, not doubled
    copy = mlflow.MlflowClient(uris["copy"])
    copy_experiment = TrackingStore(uris["copy"]).prepare_experiment("grokbench/mnist")
    copy.create_run(copy_experiment, tags={SWEEP_TAG: SWEEP, KEY_TAG: "baseline-ce-0", IMPORTED_TAG: "runs.jsonl.gz"})

    archive = tmp_path / "runs.jsonl.gz"
    assert cli(["export", "mnist", "--tracking-uri", uris["source"], "--out", str(archive)]) == 0
    assert "wrote 4 runs of grokbench/mnist" in capsys.readouterr().out
    assert not list(tmp_path.glob("*.partial"))
    assert cli(["import", str(archive), "--tracking-uri", uris["copy"]]) == 0
    assert "added 4 runs" in capsys.readouterr().out
    assert cli(["import", str(archive), "--tracking-uri", uris["copy"]]) == 0
    assert "added 0 runs" in capsys.readouterr().out

    def by_key(client, experiment):
        runs = client.search_runs([experiment])
        assert len(runs) == len({r.data.tags[KEY_TAG] for r in runs})  # one run a trial
        return {r.data.tags[KEY_TAG]: r for r in runs if r.data.tags.get("status") != "running"}

    originals, copies = by_key(source, experiment_id), by_key(copy, copy_experiment)
    assert originals.keys() == copies.keys()
    for key, original in originals.items():
        again = copies[key]
        assert again.data.params == original.data.params and again.info.status == original.info.status
        assert {k: v for k, v in again.data.tags.items() if k != IMPORTED_TAG} == original.data.tags
        for metric in original.data.metrics:
            history = [(m.step, m.value) for m in source.get_metric_history(original.info.run_id, metric)]
            assert [(m.step, m.value) for m in copy.get_metric_history(again.info.run_id, metric)] == history
    config = copy.download_artifacts(copies["baseline-ce-0"].info.run_id, "config.json", str(tmp_path))
    assert open(config).read() == '{"lr": 0.001}'
    # what the search found travels too (the Optuna table reads it), and nothing else of the experiment's
    assert TrackingStore(uris["copy"]).best_tags("grokbench/mnist") == best
    assert "unrelated" not in copy.get_experiment(copy_experiment).tags
    # what a sweep skips, and what the tables say, are the same on both stores
    held = [
        {
            key: (t.sweep_id, t.status)
            for key, t in TrackingStore(uris[name]).stored_trials("grokbench/mnist").items()
            if t.status != "running"
        }
        for name in ("copy", "source")
    ]  # a run in progress is not exported
    assert held[0] == held[1]
    for name in uris:
        assert tables_main(["--tracking-uri", uris[name], "--out", str(tmp_path / name), "--format", "csv"]) == 0
    for table in ("table1_ce.csv", "trials.csv"):
        assert (tmp_path / "copy" / table).read_text() == (tmp_path / "source" / table).read_text()


def test_export_and_import_refuse_bad_input_clearly(tmp_path, migrated_store, capsys):
    from grokbench.cli import main as cli

    shutil.copy(migrated_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert cli(["export", "nope", "--tracking-uri", uri, "--out", str(tmp_path / "x.gz")]) == 2
    assert "no experiment grokbench/nope" in capsys.readouterr().err and not (tmp_path / "x.gz").exists()
    assert cli(["import", str(tmp_path / "missing.jsonl.gz"), "--tracking-uri", uri]) == 2
    assert "no archive at" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("hello")
    assert cli(["import", str(tmp_path / "notes.txt"), "--tracking-uri", uri]) == 2
    assert "is not a grokbench archive" in capsys.readouterr().err
    bad_header = tmp_path / "bad.jsonl.gz"
    with gzip.open(bad_header, "wt") as stream:
        stream.write(
            json.dumps({"format": "grokbench-runs/1", "experiment": "grokbench/mnist", "runs": 0, "best": ["lam", 0.1]})
            + "\n"
        )
    assert cli(["import", str(bad_header), "--tracking-uri", uri]) == 2
    assert "best settings are not best.<sweep>.<method>.<setting> tags" in capsys.readouterr().err
    for best in ({"mlflow.note.content": "1"}, {"best.s.lam": "0.1"}, {"best.s.grokalign.lam": "high"}):
        with gzip.open(bad_header, "wt") as stream:
            stream.write(
                json.dumps({"format": "grokbench-runs/1", "experiment": "grokbench/mnist", "runs": 0, "best": best})
                + "\n"
            )
        assert cli(["import", str(bad_header), "--tracking-uri", uri]) == 2
        assert "best settings are not" in capsys.readouterr().err
    assert TrackingStore(uri).experiment_id("grokbench/mnist") is None  # nothing half-written


def test_the_tables_keep_a_trials_newest_outcome_over_an_older_failure():
    import pandas as pd

    from analysis.runs import latest_per_trial

    runs = pd.DataFrame(
        {
            "run_id": ["a", "b", "c", "d", "e"],
            "experiment": "mnist",
            "trial_key": ["k1", "k1", "k1", "k2", "k2"],
            "sweep_id": ["s1", "s2", "s3", "s1", "s2"],
            "status": ["failed", "grokked", "running", "censored", "grokked"],
            "start_time": [1, 2, 3, 1, 2],
        }
    )
    kept = latest_per_trial(runs.sample(frac=1, random_state=0)).set_index("trial_key")["sweep_id"]
    assert kept.to_dict() == {"k1": "s2", "k2": "s2"}  # an outcome over a failure or a run in progress; newest first


def test_an_import_upgrades_a_failure_and_refuses_a_damaged_archive(tmp_path, migrated_store, capsys):
    import gzip

    from grokbench.cli import main as cli

    for name in ("source", "copy"):
        shutil.copy(migrated_store, tmp_path / f"{name}.db")
    source_uri, copy_uri = (f"sqlite:///{tmp_path / name}.db" for name in ("source", "copy"))
    source = mlflow.MlflowClient(source_uri)
    experiment_id = TrackingStore(source_uri).prepare_experiment("grokbench/mnist")
    log_trial(source, experiment_id, "baseline", "ce", 0, "failed", 0, 0, curve=False)
    first = tmp_path / "out" / "first.jsonl.gz"  # into a directory that does not exist yet
    assert cli(["export", "mnist", "--tracking-uri", source_uri, "--out", str(first)]) == 0
    assert cli(["import", str(first), "--tracking-uri", copy_uri]) == 0
    # the trial is run again and groks: importing the newer archive adds the outcome beside the failure
    log_trial(source, experiment_id, "baseline", "ce", 0, "grokked", 400, 40.0)
    second = tmp_path / "out" / "second.jsonl.gz"
    assert cli(["export", "mnist", "--tracking-uri", source_uri, "--out", str(second)]) == 0
    capsys.readouterr()
    assert cli(["import", str(second), "--tracking-uri", copy_uri]) == 0
    assert "added 1 runs to" in capsys.readouterr().out  # the grokked run; the failed one was there
    assert tables_main(["--tracking-uri", copy_uri, "--out", str(tmp_path / "t"), "--format", "csv"]) == 0
    assert read_csv_table(tmp_path / "t" / "table1_ce.csv").loc["Baseline", "grokked"] == "1/1"

    lines = gzip.open(second, "rt").read().splitlines()
    truncated = tmp_path / "truncated.jsonl.gz"
    with gzip.open(truncated, "wt") as stream:
        stream.write("\n".join(lines[:-1]) + "\n")
    shutil.copy(migrated_store, tmp_path / "empty.db")
    empty_uri = f"sqlite:///{tmp_path / 'empty.db'}"
    assert cli(["import", str(truncated), "--tracking-uri", empty_uri]) == 2
    assert "is incomplete (1 of 2 runs); nothing was imported" in capsys.readouterr().err
    assert mlflow.MlflowClient(empty_uri).get_experiment_by_name("grokbench/mnist") is None
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(second.read_bytes()[:-40])
    assert cli(["import", str(cut), "--tracking-uri", empty_uri]) == 2
    assert "is damaged" in capsys.readouterr().err
    flipped = bytearray(second.read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF  # a corrupt deflate block
    cut.write_bytes(bytes(flipped))
    assert cli(["import", str(cut), "--tracking-uri", empty_uri]) == 2
    assert "is damaged" in capsys.readouterr().err
    with gzip.open(cut, "wt") as stream:  # JSON, but not a run
        stream.write(lines[0] + "\n[]\n1\n")
    assert cli(["import", str(cut), "--tracking-uri", empty_uri]) == 2
    assert "run 1 is not a run record" in capsys.readouterr().err
    assert mlflow.MlflowClient(empty_uri).get_experiment_by_name("grokbench/mnist") is None


def test_figure_lines_are_per_method_and_per_lambda_only_where_a_method_ran_at_several():
    import pandas as pd

    from analysis.groups import run_groups
    from analysis.plotting import COLOURS, coloured

    # Table 1: GrokAlign at one λ per loss (1e-3 with ce, 1e-4 with mse) keeps its name and colour
    table1 = pd.DataFrame(
        {"method": ["baseline", "grokalign"] * 2, "loss": ["ce", "ce", "mse", "mse"], "lam": [0.0, 1e-3, 0.0, 1e-4]}
    )
    lines = {(s.label, s.by): colour for s, colour in coloured(run_groups(table1, by=("loss",)))}
    assert lines == {
        ("Baseline", ("ce",)): COLOURS["baseline"],
        ("Baseline", ("mse",)): COLOURS["baseline"],
        ("GrokAlign", ("ce",)): COLOURS["grokalign"],
        ("GrokAlign", ("mse",)): COLOURS["grokalign"],
    }
    # a λ sweep: a line per λ, each in its own colour, none a method's
    sweep = pd.DataFrame({"method": ["baseline"] + ["grokalign"] * 3, "lam": [0.0, 1e-4, 1e-3, 1e-2]})
    lines = {s.label: colour for s, colour in coloured(run_groups(sweep))}
    assert list(lines) == ["Baseline", "GrokAlign (λ=0.0001)", "GrokAlign (λ=0.001)", "GrokAlign (λ=0.01)"]
    spare = [lines[label] for label in list(lines)[1:]]
    assert len(set(spare)) == 3 and not set(spare) & set(COLOURS.values())
    # every group in one panel: a label's second loss needs a colour of its own; a newer method has its own too
    arms = pd.DataFrame({"method": ["baseline", "baseline", "orthograd"], "loss": ["ce", "stablemax", "ce"]})
    lines = {
        (s.label, s.by): colour for s, colour in coloured(run_groups(arms.assign(lam=0.0), by=("loss",)), one_axes=True)
    }
    assert lines[("Baseline", ("ce",))] == "C0" and lines[("⊥Grad", ("ce",))] == "C4"
    assert lines[("Baseline", ("stablemax",))] not in {"C0", "C4", *COLOURS.values()}


def test_a_budget_counts_a_trial_that_grokked_later_as_censored_at_it(tmp_path, fresh_mnist):
    uri, client, experiment_id = fresh_mnist
    # 4 updates an epoch: seed 0 groks at epoch 50 (20 s), seed 1 at epoch 150 (60 s); both ran a 250-epoch budget
    for seed, (steps, seconds) in enumerate([(200, 20.0), (600, 60.0)]):
        log_trial(client, experiment_id, "baseline", "ce", seed, "grokked", steps, seconds)
    runs, _ = load_runs(uri)
    assert budget_note(runs, None) == "budget: 250 epochs, as the trials ran; --max-epochs applies a smaller one"
    cut = at_budget(uri, runs, max_epochs=100).set_index("seed")
    assert cut.loc[0, "status"] == "grokked" and cut.loc[0, "steps_to_grok"] == 200
    # seed 1 at its last evaluation within 100 epochs (step 40 of its curve: 0, 40, 600), censored there
    assert cut.loc[1, "status"] == "censored" and pd.isna(cut.loc[1, "steps_to_grok"])
    assert (cut.loc[1, "steps"], cut.loc[1, "epochs"], cut.loc[1, "train_time_s"]) == (40, 10, 4.0)
    assert (
        tables_main(
            ["--tracking-uri", uri, "--out", str(tmp_path / "t"), "--max-epochs", "100", "--format", "md", "--no-log"]
        )
        == 0
    )
    text = (tmp_path / "t" / "table1_ce.md").read_text()
    assert "| Baseline | 1/2 |" in text and "budget: 100 epochs (--max-epochs)" in text


def test_a_methods_variants_get_rows_of_their_own(tmp_path, fresh_mnist):
    uri, client, experiment_id = fresh_mnist
    for seed in range(2):
        log_trial(client, experiment_id, "baseline", "ce", seed, "grokked", 400, 40.0)
        log_trial(client, experiment_id, "grokalign", "ce", seed, "grokked", 100, 10.0, lam=1e-3)
        log_trial(
            client,
            experiment_id,
            "grokalign",
            "ce",
            seed,
            "grokked",
            120,
            6.0,
            lam=1e-3,
            grokalign_subset=32,
            grokalign_every=4,
        )
    assert tables_main(["--tracking-uri", uri, "--out", str(tmp_path / "t"), "--format", "md", "--no-log"]) == 0
    rows = [
        line.split(" | ")[0]
        for line in (tmp_path / "t" / "table1_ce.md").read_text().splitlines()
        if line.startswith("| ") and "2/2" in line
    ]
    assert rows == ["| Baseline", "| GrokAlign", "| GrokAlign (subset=32, every=4)"]


def test_table1_gives_each_init_scale_rows_of_its_own_against_its_own_baseline(tmp_path, fresh_mnist):
    uri, client, experiment_id = fresh_mnist
    # init 1: baseline 400, 600 steps, GrokAlign 100, 150 (×4); init 8: baseline 800, 1200, GrokAlign 400, 600 (×2)
    for init, baseline, grokalign in ((1.0, (400, 600), (100, 150)), (8.0, (800, 1200), (400, 600))):
        for method, steps, lam in (("baseline", baseline, 0.0), ("grokalign", grokalign, 1e-3)):
            for seed in range(2):
                log_trial(
                    client, experiment_id, method, "ce", seed, "grokked", steps[seed], 1.0, lam=lam, init_scale=init
                )
    assert tables_main(["--tracking-uri", uri, "--out", str(tmp_path / "t"), "--format", "csv", "--no-log"]) == 0
    table = pd.read_csv(tmp_path / "t" / "table1_ce.csv", dtype=str, keep_default_na=False)
    assert table[["Method", "init_scale"]].values.tolist() == [
        ["Baseline", "1"],
        ["GrokAlign", "1"],
        ["Baseline", "8"],
        ["GrokAlign", "8"],
    ]
    # the ratio of geometric means: √(400·600) / √(100·150) = 4 and √(800·1200) / √(400·600) = 2
    speed_ups = table["speed-up (steps)"].str.extract(r"^×([0-9.]+)")[0].tolist()
    assert speed_ups == ["1", "4.00", "1", "2.00"]  # each baseline ×1 against itself


def test_the_figures_grid_spans_the_runs_known_x_and_ignores_a_run_without_one():
    from analysis.plotting import grid_over

    unknown = pd.Series([0.5, 0.6], index=[np.nan, np.nan])  # a run with no epoch count: its x is NaN
    runs = [unknown, pd.Series([0.1, 0.2, 0.3], index=[0.0, 10.0, 50.0]), pd.Series([0.4], index=[100.0])]
    log = grid_over(runs, log=True)
    assert log[0] == pytest.approx(10.0) and log[-1] == pytest.approx(100.0)
    assert np.allclose(np.diff(np.log(log)), np.log(10) / (len(log) - 1))  # evenly in log
    linear = grid_over(runs, log=False)
    assert linear[0] == 0.0 and linear[-1] == pytest.approx(100.0)
    assert grid_over([unknown], log=True)[-1] == 0.0  # nothing known: a grid at 0, not NaN


def test_the_median_stops_where_the_first_seed_ends_and_each_seed_is_marked_on_its_own_curve():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis.plotting import mark_events, median_while_all_run, seed_lines

    # seed a grokked at step 20 and stopped there; seed b went on to its budget
    a = pd.Series([0.0, 1.0, 2.0], index=[0.0, 10.0, 20.0])
    b = pd.Series([0.0, 3.0, 6.0, 9.0], index=[0.0, 10.0, 20.0, 30.0])
    grid = np.array([0.0, 10.0, 20.0, 25.0, 30.0])
    median = median_while_all_run([a, b], grid)
    assert list(median[:3]) == [0.0, 2.0, 4.0] and np.isnan(median[3:]).all()  # no jump to b alone past 20
    _, ax = plt.subplots()
    seed_lines(ax, [a, b], grid, "C0")
    assert [list(line.get_xdata()) for line in ax.get_lines()] == [[0, 10, 20], [0, 10, 20, 30]]
    _, log_ax = plt.subplots()
    seed_lines(log_ax, [a, b], grid[1:], "C0")  # a log axis's grid starts at the first positive step
    assert [list(line.get_xdata()) for line in log_ax.get_lines()] == [[10, 20], [10, 20, 30]]
    runs = pd.DataFrame({"run_id": ["a", "b"], "steps_to_memorise": [5.0, 15.0], "steps_to_grok": [20.0, np.nan]})
    mark_events(ax, runs, {"a": a, "b": b}, (("steps_to_memorise", "s"), ("steps_to_grok", "*")), "C0")
    marks = {
        (line.get_marker(), float(line.get_xdata()[0]), float(line.get_ydata()[0]))
        for line in ax.get_lines()
        if line.get_marker() in ("s", "*")
    }
    assert marks == {("s", 5.0, 0.5), ("s", 15.0, 4.5), ("*", 20.0, 2.0)}  # b never grokked: no ★
    plt.close("all")


@pytest.mark.parametrize(
    "change",
    [
        {"metrics": []},  # was an AttributeError traceback
        {"metrics": {"test_acc": [[0, "high", 1]]}},
        {"artifacts": {"../../outside.txt": "x"}},  # would write beside the store's artifacts
        {"params": {"lr": 0.1}},
        {"status": "DONE"},
        {"end_time": "later"},
    ],
)
def test_an_import_refuses_a_record_it_could_not_write_whole(tmp_path, change, capsys):
    """Found by tests/test_fuzz.py: a record whose fields had the wrong types passed the check, then failed (or wrote
    outside the store) part-way through the import."""
    from grokbench.cli import main as cli

    committed = Path(__file__).resolve().parents[2] / "results" / "runs" / "mnist_tuned.jsonl.gz"
    header, record = (json.loads(line) for line in gzip.open(committed, "rt").read().splitlines()[:2])
    archive = tmp_path / "one.jsonl.gz"
    lines = [json.dumps({**header, "runs": 1}), json.dumps({**record, **change})]
    archive.write_bytes(gzip.compress("\n".join(lines).encode()))
    assert cli(["import", str(archive), "--tracking-uri", f"sqlite:///{tmp_path / 'new.db'}"]) == 2
    assert "is damaged (run 1 has " in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.jsonl.gz"]


def test_a_setting_another_sets_is_not_independent():
    runs = pd.DataFrame(
        {
            "init_scale": [0.5, 0.5, 2.0, 2.0, 2.0],
            "task.lr_factor": [2.0, 2.0, 0.125, 0.125, 0.125],  # set by init_scale: 0.5 / σ²
            "task.alpha": [1.0, 4.0, 1.0, 4.0, 4.0],  # crossed with it
        }
    )
    assert independent_settings(runs, ["init_scale", "task.lr_factor", "task.alpha"]) == ["init_scale", "task.alpha"]
    assert independent_settings(runs, ["task.alpha", "init_scale"]) == ["task.alpha", "init_scale"]
