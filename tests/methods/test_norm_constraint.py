"""Omnigrok's weight-norm constraint: an AdamW step, then every trained weight rescaled to a fixed total norm;
weight decay off, refused only when a user chose it."""

import pytest
import torch
from helpers import parameters, straight_and_resumed

from grokbench.config import ConfigError
from grokbench.resolve import config_of, resolve
from grokbench.train import Trial

# full batch, float64: one epoch is one AdamW update; modarith's default weight decay (1) is the task's
TINY = dict(task="modarith", p=11, train_fraction=0.5, architecture="mlp", dtype="float64", init_scale=3.0)


def test_one_step_is_an_adamw_step_then_the_rescale():
    trial = Trial(config_of(**TINY, method="norm_constraint", norm_constraint_multiple=1.5))
    reference = Trial(config_of(**TINY, weight_decay=0.0))  # AdamW alone, from the same initial weights
    assert type(trial.optimizer) is torch.optim.AdamW and trial.cfg.weight_decay == 0.0
    initial = parameters(reference)
    target = 1.5 * initial.norm() / 3.0  # the norm at init scale 1, times the multiple
    trial.train_epoch()
    reference.train_epoch()
    stepped = parameters(reference)
    torch.testing.assert_close(parameters(trial), stepped * (target / stepped.norm()), rtol=1e-13, atol=0)
    assert parameters(trial).norm().item() == pytest.approx(target.item(), rel=1e-13)
    for p, q in zip(trial.params, reference.params, strict=True):  # Adam's moments as AdamW leaves them
        ours, adamw = trial.optimizer.state[p], reference.optimizer.state[q]
        assert torch.equal(ours["exp_avg"], adamw["exp_avg"]) and torch.equal(ours["exp_avg_sq"], adamw["exp_avg_sq"])


def test_a_weight_decay_from_the_task_or_a_preset_becomes_0_and_a_chosen_one_is_refused():
    assert resolve(config_of(task="modarith", method="norm_constraint")).weight_decay == 0.0  # the task's 1.0
    assert resolve(config_of(task="mnist", preset="omnigrok", method="norm_constraint")).weight_decay == 0.0
    assert resolve(config_of(task="mnist", method="norm_constraint", weight_decay=0)).weight_decay == 0.0
    with pytest.raises(ConfigError, match="weight_decay: norm_constraint holds the weight norm fixed"):
        resolve(config_of(task="mnist", preset="omnigrok", method="norm_constraint", weight_decay=0.01))


def test_the_multiple_must_be_positive():
    with pytest.raises(ConfigError, match="norm_constraint_multiple: must be > 0"):
        resolve(config_of(task="mnist", method="norm_constraint", norm_constraint_multiple=0))


def test_a_resumed_trial_keeps_its_target_and_equals_the_uninterrupted_run_bit_for_bit():
    cfg = config_of(**TINY, method="norm_constraint", batch_size=20, max_epochs=6, eval_every=2)
    run = straight_and_resumed(cfg, stop_at_epoch=2)
    assert torch.equal(run.resumed.method.target, run.straight.method.target)
    assert torch.equal(parameters(run.straight), parameters(run.resumed))
    assert run.seen == run.straight_seen
