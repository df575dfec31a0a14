"""The polynomial task (Kumar et al.): centred model, closed-form NTK, kernel diagnostics, the loss criterion."""

import pytest
import torch
from helpers import parameters, run_collecting, straight_and_resumed
from torch.func import functional_call, jacrev

from grokbench.cli import main
from grokbench.events import GrokEvents, LossCriterion, Milestone
from grokbench.resolve import config_of, resolve
from grokbench.tasks.polynomial import CentredTwoLayer
from grokbench.train import Trial

TINY = dict(
    task="polynomial",
    dim=10,
    train_size=40,
    test_size=50,
    width=20,
    probe_size=16,
    max_epochs=30,
    eval_every=5,
    threads=1,
)


def tiny_network(alpha=1.7, epsilon=0.3):
    torch.manual_seed(3)
    return CentredTwoLayer(torch.randn(7, 5, dtype=torch.float64), alpha, epsilon)


def test_centred_output_is_zero_at_initialisation_and_not_after_a_change():
    model = tiny_network()
    x = torch.randn(9, 5, dtype=torch.float64)
    assert torch.equal(model(x), torch.zeros(9, 1, dtype=torch.float64))
    with torch.no_grad():
        model.weight.add_(0.1)
    assert model(x).abs().min() > 0


def test_closed_form_ntk_equals_the_jacobian_one():
    model = tiny_network()
    with torch.no_grad():
        model.weight.add_(0.2 * torch.randn_like(model.weight))  # away from the initial weights
    x, x2 = torch.randn(6, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)

    def outputs(weight, inputs):
        return functional_call(model, {"weight": weight}, (inputs,)).squeeze(1)

    jac, jac2 = (jacrev(outputs)(model.weight.detach(), z).flatten(1) for z in (x, x2))
    closed = model.ntk(x, x2, model.weight.detach())
    assert torch.allclose(closed, jac @ jac2.T, rtol=1e-12, atol=1e-14)


def test_lr_resolves_to_width_over_alpha_squared_and_is_stored():
    cfg = resolve(config_of(task="polynomial", width=500, alpha=4.0))
    assert cfg.lr == 500 / 16 and cfg.to_dict()["lr"] == 500 / 16
    assert Trial(cfg.replace(max_epochs=1)).run()["lr"] == 500 / 16
    assert cfg.batch_size == 550 and cfg.optimizer == "sgd" and cfg.weight_decay == 0.0 and cfg.dtype == "float64"


def test_kernel_figures_at_initialisation():
    _, seen = run_collecting(Trial(config_of(**{**TINY, "max_epochs": 5})))
    first = seen[0][1]
    assert first["ntk_distance"] == pytest.approx(0.0, abs=1e-14) and first["weight_change"] == 0.0
    assert first["train_loss_rel"] == 1.0 and first["test_loss_rel"] == 1.0
    assert 0 < first["kernel_regression_test_loss_rel"] < 1  # the initial kernel predicts better than zero
    later = seen[-1][1]
    assert later["ntk_distance"] > 0 and later["weight_change"] > 0


def loss_events(curve):
    events = GrokEvents(LossCriterion(memorise_threshold=0.01, grok_threshold=0.1, strict_threshold=0.05))
    for i, (train, test) in enumerate(curve):
        events.update(
            Milestone(step=10 * i, epoch=10 * i, time_s=float(i)), {"train_loss_rel": train, "test_loss_rel": test}
        )
    return events


def test_loss_criterion_on_a_hand_made_curve():
    events = loss_events(
        [
            (1.0, 1.0),
            (0.2, 0.9),
            (0.01, 0.5),
            (0.009, 0.18),
            (0.001, 0.1),
            (0.0005, 0.099),
            (0.0001, 0.06),
            (0.0001, 0.049),
        ]
    )
    assert events.memorised.step == 30  # strictly below 1 % of the initial train loss
    assert events.grokked.step == 50  # strictly below 10 % of the initial test loss
    summary = events.summary()
    assert summary["steps_to_grok_strict"] == 70 and summary["epochs_to_grok_strict"] == 70
    assert summary["grok_phase_time_s"] == 2.0 and not summary["grokked_before_memorised"]
    assert events.settled.step == 70  # a run that stops at grokking goes on to the strict threshold
    assert GrokEvents.from_state(events.criterion, events.state_dict()) == events


def test_loss_criterion_that_never_reaches_the_strict_threshold_reports_none():
    events = loss_events([(1.0, 1.0), (0.001, 0.08)])
    assert events.summary()["steps_to_grok"] == 10 and events.summary()["steps_to_grok_strict"] is None
    assert events.settled is None  # the run goes on to its budget for the strict threshold


def test_a_run_stops_once_the_strict_threshold_is_reached_not_at_grokking():
    # thresholds a few epochs apart on the tiny problem: grokked first, strict later, then it stops
    cfg = config_of(**{**TINY, "max_epochs": 2000, "grok_threshold": 0.9, "grok_strict_threshold": 0.6})
    summary = Trial(cfg).run()
    assert summary["status"] == "grokked"
    assert summary["epochs_to_grok"] < summary["epochs_to_grok_strict"] == summary["epochs"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--alpha", "0"], "alpha: must be > 0, got 0.0"),
        (["--width", "0"], "width: must be > 0, got 0"),
        (["--method", "adversarial"], "adversarial needs accuracy, which task polynomial does not offer"),
        (["--grok-strict-threshold", "0.2"], "grok_strict_threshold: must be at most grok_threshold (0.1)"),
        (["--probe-size", "1"], "probe_size: must be at least 2 on task polynomial"),
    ],
)
def test_bad_input_exits_2_with_a_clear_line(argv, message, capsys):
    assert main(["run", "polynomial", *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_short_run_summary_carries_the_kernel_finals():
    summary = Trial(config_of(**TINY)).run()
    kernel_keys = [k for k in summary if "ntk" in k or "kernel" in k]
    assert {"final_ntk_distance", "final_kernel_alignment", "final_kernel_regression_test_loss"} <= set(kernel_keys)
    assert all(summary[k] is not None for k in kernel_keys)
    assert "steps_to_grok_strict" in summary


@pytest.mark.parametrize("method", ["baseline", "grokalign", "grokfast"])
def test_save_restore_continue_equals_an_uninterrupted_run(method):
    run = straight_and_resumed(config_of(**TINY, method=method), stop_at_epoch=10)
    assert run.seen == run.straight_seen
    assert torch.equal(parameters(run.resumed), parameters(run.straight))
    assert run.resumed_summary["steps_to_grok_strict"] == run.straight_summary["steps_to_grok_strict"]
