"""Kumar et al.'s other notebook cells on the polynomial task: the Fig. 3a preset's settings, and the Fig. 3e
stopping rule and crossings, watched every epoch."""

import pytest
import torch
from helpers import run_collecting, straight_and_resumed

from grokbench.cli import main
from grokbench.config import identity
from grokbench.events import GrokEvents, Milestone
from grokbench.resolve import config_of, resolve
from grokbench.tasks import TASKS
from grokbench.tasks.base import TaskData
from grokbench.tasks.polynomial import DATA_STREAM_OFFSET, CentredTwoLayer, ConvergingLossCriterion, EpochWatch
from grokbench.train import Trial

POLYNOMIAL = TASKS["polynomial"]
TINY = dict(task="polynomial", dim=10, train_size=40, test_size=50, width=20, probe_size=16, threads=1)
NEW_SETTINGS = {
    "input_scaling",
    "target",
    "loss_scaling",
    "lr_rule",
    "lr_factor",
    "stop_rule",
    "converge_tolerance",
    "converge_window",
    "crossing_mse",
    "data_draw",
}


def test_every_new_setting_at_its_default_leaves_a_trial_identity_as_it_was():
    assert not NEW_SETTINGS & set(identity(resolve(config_of(**TINY))))
    assert {"input_scaling", "target", "loss_scaling", "lr_rule", "lr_factor"} <= set(
        identity(resolve(config_of(**TINY, preset="kumar_fig3a")))
    )


def test_fig3a_preset_is_the_spec_cell():
    cfg = resolve(config_of(task="polynomial", preset="kumar_fig3a", alpha=4.0))
    s = cfg.task_settings
    assert (s.train_size, s.test_size, s.dim, s.width, s.epsilon) == (450, 1000, 100, 500, 0.25)
    assert cfg.max_epochs == 60_000 and cfg.batch_size == 450 and cfg.weight_decay == 0.0
    assert cfg.lr == 250.0  # η = 0.5·N, whatever α
    assert resolve(config_of(task="polynomial", preset="kumar_fig3a", alpha=0.125)).lr == 250.0


def test_fig3e_preset_rate_is_twenty_n_over_alpha_squared():
    cfg = resolve(config_of(task="polynomial", preset="kumar_fig3e", alpha=2.0, epsilon=0.04))
    assert cfg.lr == 20 * 500 / 4 and cfg.max_epochs == 110_000 and cfg.eval_every == 50
    assert cfg.task_settings.stop_rule == "converged" and cfg.task_settings.train_size == 550


def test_unscaled_inputs_and_the_square_target_relate_to_fig1_data_as_written():
    # the same draws: Fig. 3a's x is √D × Fig. 1's, its target (β·x/√D)² twice Fig. 1's (β·x)²/2
    fig1 = POLYNOMIAL.load_data(resolve(config_of(**TINY)))
    fig3a = POLYNOMIAL.load_data(
        resolve(config_of(**TINY, input_scaling="preactivation", target="square", loss_scaling="alpha_sq"))
    )
    assert torch.allclose(fig3a.x_train, fig1.x_train * 10**0.5, rtol=1e-14)
    assert torch.allclose(fig3a.y_test, 2 * fig1.y_test, rtol=1e-12)
    assert fig3a.x_train.std().item() == pytest.approx(1.0, abs=0.05)  # x ~ N(0, I)


def test_the_preactivation_scaled_model_on_unscaled_inputs_is_the_fig1_model_on_scaled_ones():
    torch.manual_seed(0)
    weight, x = torch.randn(7, 9, dtype=torch.float64), torch.randn(5, 9, dtype=torch.float64)
    scaled = CentredTwoLayer(weight.clone(), 1.5, 0.25, input_scale=9**-0.5)
    plain = CentredTwoLayer(weight.clone(), 1.5, 0.25)
    with torch.no_grad():
        for model in (scaled, plain):
            model.weight.add_(0.3)
    assert torch.allclose(scaled(x), plain(x / 3), rtol=1e-13)
    assert torch.allclose(scaled.ntk(x, x, scaled.weight), plain.ntk(x / 3, x / 3, plain.weight), rtol=1e-13)


def test_loss_scaling_divides_the_trained_loss_by_alpha_squared():
    loss = POLYNOMIAL.loss_fn(resolve(config_of(**TINY, alpha=2.0, loss_scaling="alpha_sq")))
    out, y = torch.tensor([[1.0], [3.0]], dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64)
    assert loss(out, y).item() == 0.625  # ((1 − 0)² + (3 − 1)²)/2 = 2.5, over α² = 4


def watch(tolerance=1e-5, window=5, threshold=0.1, initial_test=0.75):
    model = CentredTwoLayer(torch.ones(3, 2, dtype=torch.float64), 1.0, 0.0)
    y_test = torch.tensor([initial_test**0.5], dtype=torch.float64)  # mean(y²) = initial_test
    x, y = torch.zeros(1, 2, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    data = TaskData(x, y, x, y_test)
    return EpochWatch(model, data, tolerance, window, threshold)


def fed(w, losses):
    for pair in losses:
        w.observe(torch.tensor(pair, dtype=torch.float64))
    return {name: int(value) for name, value in w.metrics().items()}


def test_watch_on_a_hand_made_loss_sequence():
    # train below 0.1 first at epoch 2, test at 5; both flat from epoch 5 on, so |L(e) − L(e − 4)| < 1e-5 first at
    # e = 9; later values are not recorded (the authors' run has stopped)
    sequence = [(0.7, 0.75), (0.3, 0.6), (0.09, 0.5), (0.05, 0.2), (0.05, 0.12)] + [(0.05, 0.099)] * 5
    assert fed(watch(), sequence + [(0.01, 0.01)]) == {
        "converged_epoch": 9,
        "train_mse_below_epoch": 2,
        "test_mse_below_epoch": 5,
    }


def test_watch_needs_more_than_window_epochs_and_a_test_loss_below_its_initial_value():
    flat = [(0.5, 0.5)] * 10  # steady from epoch 4, but the rule is checked from epoch 6 (a list of more than 5)
    assert fed(watch(), flat)["converged_epoch"] == 6
    assert fed(watch(), [(0.5, 0.8)] * 10)["converged_epoch"] == -1  # flat above the initial test MSE 0.75
    assert fed(watch(), [(0.5, 0.5)] * 5 + [(0.5, 0.50002)] * 5)["converged_epoch"] == 9  # 2e-5 apart until then
    never_below = fed(watch(), flat)
    assert never_below["train_mse_below_epoch"] == never_below["test_mse_below_epoch"] == -1


def test_the_closed_form_test_mse_equals_the_model_forward():
    cfg = resolve(config_of(**TINY, preset="kumar_fig3e"))
    model, data = POLYNOMIAL.build_model(cfg), POLYNOMIAL.load_data(cfg)
    with torch.no_grad():
        model.weight.add_(0.1 * torch.randn_like(model.weight))
        direct = (model(data.x_test).squeeze(1) - data.y_test).square().mean()
    assert torch.allclose(model.watch.test_mse(model.weight.detach()), direct, rtol=1e-12)


def test_a_criterion_stop_event_settles_the_run_grokked_or_not():
    events = GrokEvents(ConvergingLossCriterion(0.01, 0.1, 0.05))
    not_yet = {"train_loss_rel": 0.5, "test_loss_rel": 0.9, "converged_epoch": -1.0}
    events.update(Milestone(50, 50, 1.0), not_yet)
    assert events.settled is None
    events.update(Milestone(100, 100, 2.0), not_yet | {"converged_epoch": 73.0})
    assert events.settled == Milestone(100, 100, 2.0) and events.grokked is None
    assert events.summary()["epochs_to_converged"] == 100


def test_a_watched_trial_stops_at_convergence_with_the_crossings_of_its_own_epochs():
    # grok thresholds low enough that the unwatched run does not stop at grokking first
    base = dict(TINY, alpha=1.0, epsilon=0.2, lr=60.0, crossing_mse=0.1, converge_tolerance=1e-3, grok_threshold=0.01)
    base["grok_strict_threshold"] = 0.005
    summary = Trial(config_of(**base, stop_rule="converged", eval_every=25, max_epochs=3000)).run()
    assert 0 < summary["final_converged_epoch"] < summary["epochs"] < 3000
    assert summary["epochs"] == 25 * (summary["final_converged_epoch"] // 25 + 1)  # the next evaluation
    # the same run without the watch, evaluated every epoch: its curves give the same first epochs below 0.1
    crossed = int(summary["final_test_mse_below_epoch"])
    _, seen = run_collecting(Trial(config_of(**base, eval_every=1, max_epochs=crossed)))
    first = lambda name: next(step for step, m in seen if m[name] < 0.1)  # noqa: E731
    assert (summary["final_train_mse_below_epoch"], crossed) == (first("train_loss"), first("test_loss"))


def test_a_watched_trial_resumes_exactly():
    cfg = config_of(**TINY, epsilon=0.2, lr=60.0, stop_rule="converged", crossing_mse=0.05, max_epochs=40, eval_every=5)
    run = straight_and_resumed(cfg, stop_at_epoch=10)
    assert run.straight_summary["final_train_mse_below_epoch"] > 10  # seen by the restored watch
    finals = [f"final_{name}" for name in EpochWatch.figures]
    assert run.seen == run.straight_seen
    assert [run.resumed_summary[k] for k in finals] == [run.straight_summary[k] for k in finals]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--lr-rule", "n_over_sigma"], "lr_rule: 'n_over_sigma' is not one of: n_over_alpha_sq, n"),
        (["--target", "cube"], "target: 'cube' is not one of: half_square, square"),
        (["--converge-window", "1"], "converge_window: must be at least 2"),
        (["--lr-factor", "0"], "lr_factor: must be > 0"),
        (["--stop-rule", "converged", "--method", "grokalign"], "stop_rule: converged is watched on full-batch"),
        (["--stop-rule", "converged", "--batch-size", "100"], "got method baseline, batch_size 100"),
    ],
)
def test_bad_input_exits_2_with_a_clear_line(argv, message, capsys):
    assert main(["run", "polynomial", "--max-epochs", "1", *argv]) == 2
    assert message in capsys.readouterr().err


def largest_cosine_with_beta(**settings):
    """The largest |cos(w_i, β)| over the units at initialisation; β recovered as the data's own stream makes it."""
    cfg = resolve(config_of(task="polynomial", **settings))
    torch.manual_seed(cfg.seed)  # as the trial draws its weights
    weight = POLYNOMIAL.build_model(cfg).weight.detach()
    stream = cfg.task_settings.data_seed + (DATA_STREAM_OFFSET + cfg.seed if settings.get("data_draw") else 0)
    beta = torch.randn(cfg.task_settings.dim, generator=torch.Generator().manual_seed(stream), dtype=torch.float64)
    return ((weight @ beta) / (weight.norm(dim=1) * beta.norm())).abs().max().item()


def test_a_per_seed_data_draw_keeps_the_weights_apart_from_beta():
    # seed s and data seed s share a stream: one unit starts near the target direction (random: ≈ 0.3 at most)
    assert largest_cosine_with_beta(seed=0, data_seed=0) > 0.8
    assert largest_cosine_with_beta(seed=0, data_draw="per_seed") < 0.4
    first, again = (POLYNOMIAL.load_data(resolve(config_of(**TINY, seed=1, data_draw="per_seed"))) for _ in range(2))
    other = POLYNOMIAL.load_data(resolve(config_of(**TINY, seed=2, data_draw="per_seed")))
    assert torch.equal(first.x_train, again.x_train) and not torch.equal(first.x_train, other.x_train)
    fixed = POLYNOMIAL.load_data(resolve(config_of(**TINY, seed=1, data_seed=DATA_STREAM_OFFSET + 1)))
    assert torch.equal(first.y_test, fixed.y_test)
