"""The sweep files of issue 36 plan the trials their headers describe: Kumar et al.'s Fig. 3a cell and its σ sweep,
the Fig. 3e phase grids, the init-scale sweep and GrokAlign's Table 2."""

from grokbench.resolve import resolve
from grokbench.sweep.keys import trial_key
from grokbench.sweep.spec import load_sweep


def resolved(name):
    return [resolve(cfg) for cfg in load_sweep(name).trials()]


def test_fig3a_runs_eight_alphas_three_draws_at_half_n_each_its_whole_budget():
    trials = resolved("polynomial_fig3a")
    assert sorted({c.task_settings.alpha for c in trials}) == [2**-5, 0.25, 0.5, 1, 2, 4, 8, 16]
    assert len(trials) == 24 and {c.seed for c in trials} == {0, 1, 2}
    assert {(c.lr, c.max_epochs, c.epochs_after_grok) for c in trials} == {(250.0, 60000, 60000)}
    assert {(c.task_settings.epsilon, c.task_settings.train_size, c.task_settings.data_draw) for c in trials} == {
        (0.25, 450, "per_seed")
    }


def test_sigma_pairs_each_weight_scale_with_half_n_over_its_square():
    trials = resolved("polynomial_sigma")
    assert sorted({(c.init_scale, c.lr) for c in trials}) == [
        (0.125, 16000.0),  # 0.5 · 500 / (1/8)²
        (0.25, 4000.0),
        (0.5, 1000.0),
        (1.0, 250.0),
        (2.0, 62.5),
    ]
    assert len(trials) == 15 and {c.max_epochs for c in trials} == {50000}
    # σ = 1 is the α = 1 trial of the α sweep: the same computation
    fig3a = {trial_key(c) for c in load_sweep("polynomial_fig3a").trials()}
    assert {trial_key(c) for c in load_sweep("polynomial_sigma").trials() if c.init_scale == 1.0} <= fig3a


def test_the_phase_grids_are_the_authors_cells_at_twenty_n_over_alpha_squared():
    even, full = resolved("polynomial_phase"), load_sweep("polynomial_phase_full").trials()
    assert len(even) == 49 and len(full) == 196
    assert {round(c.lr * c.task_settings.alpha**2, 6) for c in even} == {20 * 500}
    assert {round(c.task_settings.alpha / 0.4, 9) for c in even} == {2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0}
    assert {round(c.task_settings.epsilon / 0.02, 9) for c in full} == set(map(float, range(1, 15)))
    assert {round(c.task_settings.alpha / 0.4, 9) for c in full} == set(map(float, range(1, 15)))
    assert {(c.task_settings.stop_rule, c.eval_every, c.max_epochs) for c in even} == {("converged", 50, 110000)}
    assert {trial_key(c) for c in load_sweep("polynomial_phase").trials()} <= {trial_key(c) for c in full}


def test_mnist_init_trains_the_table2_methods_on_at_alpha_eight():
    trials = load_sweep("mnist_init").trials()
    assert len(trials) == 4 * 4 * 3 and {c.loss for c in trials} == {"ce"}
    on = {(c.method, c.init_scale) for c in trials if c.epochs_after_grok >= c.max_epochs}
    assert on == {(m, 8) for m in ("baseline", "grokalign", "adversarial")}
    assert {c.epochs_after_grok for c in trials if (c.method, c.init_scale) not in on} == {0}


def test_table2_mse_trials_are_table1_mse_trials_with_a_fixed_longer_budget():
    trials = load_sweep("mnist_table2_mse").trials()
    table1 = [c for c in load_sweep("mnist").trials() if c.loss == "mse" and c.method != "grokfast" and c.seed < 3]
    assert sorted(map(trial_key, trials)) == sorted(map(trial_key, table1))
    assert {(c.max_epochs, c.epochs_after_grok) for c in trials} == {(50000, 50000)}
