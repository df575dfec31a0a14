"""analysis.table2: GrokAlign's Table 2 read at the end of the budget and at the paper's accuracy, from runs logged to
a real SQLite MLflow store with known curves, checked against values worked out by hand."""

import math
import shutil

import mlflow
import pandas as pd
import pytest
from mlflow.entities import Metric
from scipy import stats
from stores import log_trial

from analysis.table2 import main as table2_main
from analysis.tables import main as tables_main
from grokbench.sweep.mlflow_store import TrackingStore

# per trial: (epoch, test accuracy, row alignment min, max) at each evaluation; the paper's CE accuracies are
# baseline 0.889, GrokAlign 0.918, adversarial 0.880
CURVES = {
    ("baseline", 0): [(10, 0.86, -0.10, 0.20), (20, 0.89, -0.24, 0.28), (30, 0.90, -0.30, 0.30)],
    ("baseline", 1): [(10, 0.87, -0.12, 0.21), (20, 0.88, -0.15, 0.22), (30, 0.92, -0.20, 0.26)],
    ("grokalign", 0): [(10, 0.91, -0.30, 0.40), (20, 0.93, -0.45, 0.45), (30, 0.94, -0.50, 0.48)],
    ("grokalign", 1): [(10, 0.90, -0.32, 0.38), (20, 0.91, -0.36, 0.41), (30, 0.92, -0.40, 0.44)],
    ("adversarial", 0): [(10, 0.85, -0.20, 0.22), (20, 0.86, -0.22, 0.25), (30, 0.87, -0.25, 0.27)],
}


def log_curves(client, run_id, points):
    entries = []
    for epoch, acc, low, high in points:
        step = 4 * epoch
        for name, value in (
            ("epoch", epoch),
            ("test_acc", acc),
            ("row_alignment_min", low),
            ("row_alignment_max", high),
        ):
            entries.append(Metric(name, float(value), 0, step))
    client.log_batch(run_id, metrics=entries)


@pytest.fixture(scope="module")
def uri(tmp_path_factory, migrated_store):
    path = tmp_path_factory.mktemp("table2") / "mlflow.db"
    shutil.copy(migrated_store, path)
    uri = f"sqlite:///{path}"
    client = mlflow.MlflowClient(uri)
    experiment_id = TrackingStore(uri).prepare_experiment("grokbench/mnist_init")
    for (method, seed), points in CURVES.items():  # log_trial's budget: 250 epochs
        run_id = log_trial(
            client, experiment_id, method, "ce", seed, "grokked", 40, 4.0, curve=False, epochs_after_grok=250
        )
        log_curves(client, run_id, points)
    # counted, not read: a trial that diverged
    run_id = log_trial(
        client, experiment_id, "adversarial", "ce", 1, "diverged", 0, 0, curve=False, epochs_after_grok=250
    )
    log_curves(client, run_id, [(10, 0.5, -0.9, 0.9)])
    # not Table 2's (each would change the means): one that stopped at grokking, one that went on 100 epochs past it
    # within a larger budget (no fixed end), one at another init scale
    for settings in (
        {"epochs_after_grok": 0},
        {"epochs_after_grok": 100},
        {"epochs_after_grok": 250, "init_scale": 4.0},
    ):
        run_id = log_trial(client, experiment_id, "baseline", "ce", 7, "grokked", 40, 4.0, curve=False, **settings)
        log_curves(client, run_id, [(10, 0.99, -0.9, 0.9)])
    return uri


@pytest.fixture
def table(uri, tmp_path):
    assert table2_main(["--tracking-uri", uri, "--experiment", "mnist_init", "--out", str(tmp_path), "--no-log"]) == 0
    assert (tmp_path / "row_alignment_ce.png").exists() and not (tmp_path / "table2_mse.csv").exists()
    return pd.read_csv(tmp_path / "table2_ce.csv").set_index("method")


def test_reads_the_end_of_the_budget(table):
    assert list(table.index) == ["baseline", "grokalign", "adversarial"]
    assert list(table["n"]) == [2, 2, 2]  # the three trials that are not Table 2's are left out
    assert list(table["seeds read"]) == ["2/2", "2/2", "1/2"]  # the diverged one is counted, not read
    base = table.loc["baseline"]
    assert base["end_accuracy"] == pytest.approx((0.90 + 0.92) / 2)
    assert base["end_row_min"] == pytest.approx((-0.30 - 0.20) / 2)
    assert base["end_row_max"] == pytest.approx((0.30 + 0.26) / 2)
    assert base["end: min / max"] == "-0.25 ± 0.071 / 0.28 ± 0.028"
    assert table.loc["adversarial", "end: min / max"] == "-0.25 / 0.27"  # one seed: no spread


def test_reads_the_first_evaluation_at_the_papers_accuracy(table):
    # baseline (0.889): seed 0 at epoch 20, seed 1 at epoch 30; GrokAlign (0.918): seed 0 at 20, seed 1 at 30;
    # adversarial (0.880): never
    assert table.loc["baseline", "paper_n"] == 2
    assert table.loc["baseline", "paper_epoch"] == pytest.approx(25)
    assert table.loc["baseline", "paper_row_min"] == pytest.approx((-0.24 - 0.20) / 2)
    assert table.loc["grokalign", "paper_row_max"] == pytest.approx((0.45 + 0.44) / 2)
    assert table.loc["adversarial", "paper's acc reached"] == "0/1"  # of the seeds read
    assert table.loc["adversarial", "at it: min / max"] == "— / —"


def test_the_last_tenth_shows_how_far_each_alignment_still_moved(table):
    # the budget's last tenth starts at the last evaluation at or before 0.9 × 30 = 27 epochs: epoch 20
    base_min, base_max = [-0.30 - -0.24, -0.20 - -0.15], [0.30 - 0.28, 0.26 - 0.22]
    assert table.loc["baseline", "last_tenth_row_min"] == pytest.approx(sum(base_min) / 2)
    assert table.loc["baseline", "last_tenth_row_max"] == pytest.approx(sum(base_max) / 2)
    spread = [f"{pd.Series(x).std():.2g}" for x in (base_min, base_max)]
    assert table.loc["baseline", "last tenth: Δ min / Δ max"] == f"-0.055 ± {spread[0]} / +0.030 ± {spread[1]}"
    assert table.loc["adversarial", "last tenth: Δ min / Δ max"] == "-0.030 / +0.020"  # one seed: no spread
    # two evaluations in each last tenth (epochs 20 and 30): too few for a line and its scatter
    assert set(table["last tenth: scatter min / max"]) == {"— / —"} and "scatter_row_min" not in table.columns


def test_difference_from_the_baseline_is_welchs(table):
    base, ours = [-0.30, -0.20], [-0.50, -0.40]
    se2 = [pd.Series(x).var() / 2 for x in (ours, base)]  # each group: s² / n
    se = math.sqrt(sum(se2))
    dof = sum(se2) ** 2 / sum(v**2 / 1 for v in se2)  # Welch–Satterthwaite, n − 1 = 1
    diff = -0.2
    half = stats.t.ppf(0.975, dof) * se
    p = 2 * stats.t.sf(abs(diff / se), dof)
    assert dof == pytest.approx(2.0)
    assert (
        table.loc["grokalign", "Δ min vs baseline (end)"]
        == f"{diff:+.3f} [{diff - half:+.3f}, {diff + half:+.3f}] p={p:.2g}"
    )
    assert table.loc["adversarial", "Δ min vs baseline (end)"] == "+0.000"  # one seed read: no interval, no test


def rms(ours, paper):
    return math.sqrt(sum((a - b) ** 2 for a, b in zip(ours, paper, strict=True)) / 2)


def test_distance_to_the_paper_is_over_the_methods_read_both_ways(uri, tmp_path):
    table2_main(["--tracking-uri", uri, "--experiment", "mnist_init", "--out", str(tmp_path), "--no-log"])
    text = (tmp_path / "table2_ce.md").read_text()
    # baseline and GrokAlign have both readings; adversarial never reached its accuracy and is left out
    base = rms((-0.25, 0.28), (-0.254, 0.283)), rms((-0.22, 0.27), (-0.254, 0.283))
    grokalign = rms((-0.45, 0.46), (-0.509, 0.478)), rms((-0.425, 0.445), (-0.509, 0.478))
    assert f"Baseline {base[0]:.3f} / {base[1]:.3f}; GrokAlign {grokalign[0]:.3f} / {grokalign[1]:.3f};" in text
    end, paper = (base[0] + grokalign[0]) / 2, (base[1] + grokalign[1]) / 2
    assert end < paper and f"mean {end:.3f} / {paper:.3f}: nearer at the end of the budget" in text


def test_no_table2_trials_is_a_clear_error(uri, tmp_path, capsys, migrated_store):
    assert table2_main(["--tracking-uri", uri, "--experiment", "mnist_init,nothing", "--out", str(tmp_path)]) == 2
    shutil.copy(migrated_store, tmp_path / "empty.db")
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    client = mlflow.MlflowClient(empty)
    experiment_id = TrackingStore(empty).prepare_experiment("grokbench/mnist_init")
    log_trial(client, experiment_id, "baseline", "ce", 0, "grokked", 40, 4.0, curve=False)
    capsys.readouterr()
    assert table2_main(["--tracking-uri", empty, "--experiment", "mnist_init", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "epochs_after_grok ≥ max_epochs" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_analysis_tables_adds_the_delay_table_where_init_scales_differ(uri, tmp_path):
    argv = ["--tracking-uri", uri, "--experiment", "mnist_init", "--out", str(tmp_path), "--no-log"]
    assert tables_main(argv) == 0
    text = (tmp_path / "init_scale_delay.md").read_text()
    assert "| Baseline | ce | 4 | 1/1 |" in text and "| Baseline | ce | 8 | 3/3 |" in text


@pytest.fixture(scope="module")
def mse_table(tmp_path_factory, migrated_store):
    """GrokAlign with MSE, two seeds evaluated every 10 epochs to 250: a straight line, plus on the minimum the
    pattern d·(+1, −1, −1, +1) over the last tenth (epochs 220 to 250), which no straight line through them absorbs
    (it sums to 0 against both 1 and the epoch)."""
    path = tmp_path_factory.mktemp("table2_mse") / "mlflow.db"
    shutil.copy(migrated_store, path)
    uri = f"sqlite:///{path}"
    client = mlflow.MlflowClient(uri)
    experiment_id = TrackingStore(uri).prepare_experiment("grokbench/mnist_table2_mse")
    for seed, d in ((0, 0.01), (1, 0.02)):
        run_id = log_trial(
            client, experiment_id, "grokalign", "mse", seed, "censored", 0, 0, curve=False, epochs_after_grok=250
        )
        pattern = dict(zip((220, 230, 240, 250), (d, -d, -d, d), strict=True))
        points = [(e, 0.8, -0.001 * e + pattern.get(e, 0.0), 0.002 * e) for e in range(10, 251, 10)]
        log_curves(client, run_id, points)
    out = tmp_path_factory.mktemp("table2_mse_out")
    assert table2_main(["--tracking-uri", uri, "--experiment", "mnist_table2_mse", "--out", str(out), "--no-log"]) == 0
    return pd.read_csv(out / "table2_mse.csv").set_index("method")


def test_scatter_is_about_the_last_tenths_trend(mse_table):
    # residuals ±d at four points, a line with 2 parameters: sqrt(4 d² / (4 − 2)) = d·√2; the maximum is the line
    scatter_min = (0.01 + 0.02) / 2 * math.sqrt(2)
    assert mse_table.loc["grokalign", "scatter_row_min"] == pytest.approx(scatter_min)
    assert mse_table.loc["grokalign", "scatter_row_max"] == pytest.approx(0.0, abs=1e-12)
    assert mse_table.loc["grokalign", "last tenth: scatter min / max"] == f"{scatter_min:.4f} / 0.0000"
    # the minimum's change over the last tenth: from epoch 220 (the last at or before 225) to 250, each seed +d − d
    assert mse_table.loc["grokalign", "last_tenth_row_min"] == pytest.approx(-0.001 * 30)
