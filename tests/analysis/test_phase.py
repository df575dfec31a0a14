"""analysis.phase: the Fig. 3e table from hand-made runs, its shape statistic and its cost rule checked by hand."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.fig3a import ALPHA
from analysis.phase import phase_end_table, phase_table
from analysis.runs import TASK_SETTING
from analysis.science_figures import EPSILON


def runs(wall_s=(10.0, 20.0, 30.0, 40.0, 50.0, 60.0)):
    return pd.DataFrame(
        {
            "task": "polynomial",
            "status": "censored",
            TASK_SETTING + "stop_rule": "converged",
            ALPHA: [0.8, 0.8, 1.6, 1.6, 2.4, 2.4],
            EPSILON: [0.04, 0.08, 0.04, 0.08, 0.04, 0.08],
            "final_train_mse_below_epoch": [100.0, 300.0, 60.0, 80.0, 50.0, 70.0],
            # amounts: 10, 0 (the test MSE first), 40, 20, censored (never below), 30
            "final_test_mse_below_epoch": [110.0, 200.0, 100.0, 100.0, -1.0, 100.0],
            "wall_s": list(wall_s),
            "steps": 1000,
            "sweep_id": "grid-1",
        }
    )


def test_the_table_has_alpha_down_epsilon_across_and_censored_cells_named():
    table = phase_table(runs())
    assert table.headers == ["α \\ ε", "0.04", "0.08"]
    assert table.rows == [["0.8", "10", "0"], ["1.6", "40", "20"], ["2.4", "censored", "30"]]


def test_the_shape_is_spearmans_correlation_over_the_cells_not_censored():
    # the five cells not censored: (α, ε, amount); Spearman's ρ = Pearson's r of the average ranks
    alpha_ranks = [1.5, 1.5, 3.5, 3.5, 5.0]  # α 0.8, 0.8, 1.6, 1.6, 2.4
    epsilon_ranks = [1.5, 4.0, 1.5, 4.0, 4.0]  # ε 0.04, 0.08, 0.04, 0.08, 0.08
    amount_ranks = [2.0, 1.0, 5.0, 3.0, 4.0]  # amounts 10, 0, 40, 20, 30
    note = phase_table(runs()).notes[1]
    for name, ranks in (("α", alpha_ranks), ("ε", epsilon_ranks)):
        rho = np.corrcoef(ranks, amount_ranks)[0, 1]
        t = rho * np.sqrt((5 - 2) / (1 - rho**2))
        p = 2 * stats.t.sf(abs(t), 5 - 2)
        assert f"with {name} ρ = {rho:+.2f} (p = {p:.2g})" in note
    assert "over the 5 cells not censored" in note


@pytest.mark.parametrize("wall_s, verdict", [(110.0, "within"), (111.0, "over")])
def test_the_cost_rule_multiplies_the_mean_cell_by_196(wall_s, verdict):
    note = phase_table(runs((wall_s,) * 6)).notes[2]
    assert f"= {wall_s * 196 / 3600:.1f} CPU-hours, {verdict} the 6 CPU-hours" in note  # 110 s × 196 = 5.99 h


def test_a_cells_cost_sums_its_seeds_and_a_diverged_cell_is_named():
    second = runs().iloc[[0]].assign(wall_s=30.0)  # cell (0.8, 0.04) again, another seed: 10 + 30 s
    gone = runs().iloc[[5]].assign(**{ALPHA: 3.2, "status": "diverged"})  # a cell whose one seed diverged
    both = pd.concat([runs(), second, gone], ignore_index=True)
    table = phase_table(both)
    # per cell: 40, 20, 30, 40, 50, 60 and 60 s: mean 300 / 7
    assert f"= {300 / 7 * 196 / 3600:.1f} CPU-hours" in table.notes[2] and "8 runs" in table.notes[2]
    assert table.rows[-1] == ["3.2", "—", "diverged"]  # (3.2, 0.04) never ran


def test_a_grid_run_as_two_sweeps_gives_each_sweeps_mean_cell():
    later = runs().assign(**{ALPHA: 3.2, "sweep_id": "grid-2"}).iloc[[0, 3]]  # cells (3.2, 0.04), (3.2, 0.08)
    note = phase_table(pd.concat([runs(), later], ignore_index=True)).notes[2]
    # per cell: 10 … 60 s in grid-1 (mean 35), 10 and 40 s in grid-2 (mean 25); all eight: 260 / 8 = 32.5
    assert f"= {32.5 * 196 / 3600:.1f} CPU-hours" in note
    assert note.endswith("; by sweep: grid-1 35 s a cell (6 cells), grid-2 25 s a cell (2 cells)")
    assert "by sweep" not in phase_table(runs()).notes[2]


def test_equal_amounts_give_no_correlation_and_the_verdict_reads_the_signs():
    flat = runs().assign(final_test_mse_below_epoch=lambda r: r["final_train_mse_below_epoch"] + 5)
    assert "all equal: no correlation" in phase_table(flat).notes[1]
    assert phase_table(runs()).notes[1].endswith("neither holds")  # 5 cells cannot reach p < 0.05 here


def test_runs_without_the_converged_rule_make_no_table():
    assert phase_table(runs().drop(columns=TASK_SETTING + "stop_rule")) is None
    assert phase_table(runs().assign(**{TASK_SETTING + "stop_rule": "grokked"})) is None


def test_the_end_table_gives_each_cells_median_test_mse_and_marks_a_seed_that_did_not_converge():
    ended = runs().assign(
        final_test_loss=[0.05, 0.08, 0.06, 0.09, 0.12, 0.07],
        steps_to_converged=[500.0, 600.0, 700.0, 800.0, np.nan, 900.0],  # (2.4, 0.04) ran to its budget
    )
    # (0.8, 0.04) has three seeds, 0.05, 0.06 and 0.16 (median 0.06, mean 0.09), one of them not converged
    seeds = ended.iloc[[0, 0]].assign(final_test_loss=[0.06, 0.16], steps_to_converged=[400.0, np.nan])
    gone = ended.iloc[[1]].assign(status="diverged", final_test_loss=9.0)  # not an end: left out
    lost = ended.iloc[[5]].assign(**{ALPHA: 3.2, "status": "diverged"})  # a cell whose one seed diverged
    table = phase_end_table(pd.concat([ended, seeds, gone, lost], ignore_index=True))
    assert table.name == "fig3e_end"
    assert table.rows == [
        ["0.8", "0.06†", "0.08"],
        ["1.6", "0.06", "0.09"],
        ["2.4", "0.12†", "0.07"],
        ["3.2", "—", "diverged"],
    ]


def test_the_end_table_reads_runs_none_of_which_converged_or_ended():
    table = phase_end_table(runs().assign(final_test_loss=0.2))
    assert [row[1:] for row in table.rows] == [["0.2†", "0.2†"]] * 3
    assert [row[1:] for row in phase_end_table(runs().assign(status="diverged")).rows] == [["diverged"] * 2] * 3


def test_a_resumed_runs_cost_is_its_wall_s_scaled_to_all_its_steps():
    # cell (0.8, 0.04) resumed at step 750 of 1000: its 10 s ran a quarter of the steps, so it cost 40 s
    resumed = runs().assign(resumed_from_step=[750.0, np.nan, np.nan, np.nan, np.nan, np.nan])
    # per cell: 40, 20, 30, 40, 50, 60 s: mean 40
    assert f"= {40 * 196 / 3600:.1f} CPU-hours" in phase_table(resumed).notes[2]
