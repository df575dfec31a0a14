"""Each method's own arithmetic against a hand computation."""

import re

import pytest
import torch

from grokbench.config import ConfigError, identity
from grokbench.losses import LOSSES, accuracy
from grokbench.methods import METHODS
from grokbench.methods.adversarial import clean_accuracy_for_sigma, noise_scale
from grokbench.resolve import config_of, resolve
from grokbench.train import Trial


def grokfast(**settings):
    cfg = resolve(config_of(task="xor", method="grokfast", **settings))
    return METHODS["grokfast"](cfg, torch.Generator())


def test_grokfast_ema_step_matches_hand_computation():
    method = grokfast(lam=0.5, grokfast_alpha=0.8)
    g1, g2 = torch.tensor([1.0, -2.0]), torch.tensor([3.0, 4.0])
    first = [g1.clone()]
    method.on_gradients(first)  # μ starts at the first gradient
    assert torch.allclose(first[0], g1 + 0.5 * g1)
    second = [g2.clone()]
    method.on_gradients(second)
    mu = 0.8 * g1 + 0.2 * g2
    assert torch.allclose(second[0], g2 + 0.5 * mu)


def test_grokfast_ma_step_matches_hand_computation():
    method = grokfast(lam=2.0, grokfast_variant="ma", grokfast_window=3)
    grads = [torch.tensor([float(i), -float(i)]) for i in range(1, 6)]
    seen = []
    for i, g in enumerate(grads):
        buf = [g.clone()]
        method.on_gradients(buf)
        seen.append(g)
        if i < 2:  # warm-up: unchanged until the window is full
            assert torch.equal(buf[0], g)
        else:
            window_mean = torch.stack(seen[-3:]).mean(dim=0)
            assert torch.allclose(buf[0], g + 2.0 * window_mean)


def test_grokfast_state_round_trips():
    method = grokfast(lam=0.5, grokfast_variant="ma", grokfast_window=2)
    for g in (torch.ones(3), 2 * torch.ones(3)):
        method.on_gradients([g])
    clone = grokfast(lam=0.5, grokfast_variant="ma", grokfast_window=2)
    clone.load_state_dict(method.state_dict())
    a, b = [torch.full((3,), 5.0)], [torch.full((3,), 5.0)]
    method.on_gradients(a)
    clone.on_gradients(b)
    assert torch.equal(a[0], b[0])


@pytest.mark.parametrize("acc, sigma", [(0.0, 0.06), (0.25, 0.045), (0.5, 0.03), (0.9, 0.03), (1.0, 0.03)])
def test_adversarial_sigma_schedule(acc, sigma):
    assert noise_scale(torch.tensor(acc, dtype=torch.float64)).item() == pytest.approx(sigma)


def test_adversarial_epoch_sets_sigma_from_clean_accuracy_and_leaves_data_untouched():
    trial = Trial(config_of(task="xor", method="adversarial", lam=2.0))
    before = trial.data.x_train.clone()
    with torch.no_grad():
        clean = (torch.sign(trial.model(before).squeeze(1)) == trial.data.y_train).double().mean()
    trial.train_epochs(1)
    assert trial.method.sigma.item() == pytest.approx(2.0 * max(0.06 * (1 - clean.item()), 0.03), rel=1e-6)
    assert torch.equal(trial.data.x_train, before)


@pytest.mark.parametrize("train_epochs", [0, 60])  # before (accuracy < 1/2) and after memorising
def test_adversarial_sigma_from_half_pass_equals_sigma_from_full_pass(train_epochs):
    trial = Trial(config_of(task="xor", method="adversarial"))
    trial.train_epochs(train_epochs)
    x, y = trial.data.x_train, trial.data.y_train
    with torch.no_grad():
        full = accuracy(trial.model(x), y)
        fast = clean_accuracy_for_sigma(trial.model, x, y)
    assert noise_scale(fast).item() == noise_scale(full).item()
    assert fast.item() <= full.item()


def test_adversarial_noise_is_fresh_per_batch():
    trial = Trial(config_of(task="xor", method="adversarial"))
    trial.method.on_epoch_start(trial.model, trial.data)
    x, y = trial.batches[0]
    losses = [trial.method.objective(trial.model, x, y, LOSSES["mse"]).item() for _ in range(2)]
    assert losses[0] != losses[1]


def test_grokalign_objective_is_loss_plus_lambda_times_mean_jacobian_norm():
    """With the exact estimator the penalty is deterministic: compare against an explicit computation."""
    trial = Trial(config_of(task="xor", method="grokalign", lam=0.3, grokalign_estimator="exact"))
    x, y = trial.batches[0]
    objective = trial.method.objective(trial.model, x[:16], y[:16], LOSSES["mse"])
    xg = x[:16].clone().requires_grad_(True)
    out = trial.model(xg)
    (grad,) = torch.autograd.grad(out.sum(), xg)  # one output: J = ∇ₓf
    expected = LOSSES["mse"](out, y[:16]) + 0.3 * grad.norm(dim=1).mean()
    assert objective.item() == pytest.approx(expected.item(), rel=1e-5)


def small_grokalign(**settings):
    """A small XOR trial whose GrokAlign penalty is deterministic (the exact estimator): only the cheaper
    penalties' own draws vary."""
    return Trial(
        config_of(
            task="xor",
            method="grokalign",
            lam=1.0,
            grokalign_estimator="exact",
            dtype="float64",
            p=20,
            hidden=16,
            train_size=64,
            **settings,
        )
    )


def objective_and_slope(trial, direction):
    """The objective on the first batch and its gradient's component along `direction`."""
    x, y = trial.batches[0]
    objective = trial.method.objective(trial.model, x, y, trial.loss_fn)
    grads = torch.autograd.grad(objective, trial.params)
    return torch.stack([objective.detach(), torch.cat([g.flatten() for g in grads]) @ direction])


@pytest.mark.parametrize(
    "settings", [{"grokalign_subset": 8}, {"grokalign_every": 4}, {"grokalign_subset": 8, "grokalign_every": 3}]
)
def test_cheaper_penalties_are_unbiased_in_value_and_gradient(settings):
    """Over 2000 draws, the mean objective and the mean of its gradient along a fixed direction lie within 4
    standard errors of the whole-batch, every-update objective's (the same initial weights)."""
    full, cheap = small_grokalign(), small_grokalign(**settings)
    direction = torch.randn(
        sum(p.numel() for p in full.params), generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    expected = objective_and_slope(full, direction)
    draws = torch.stack([objective_and_slope(cheap, direction) for _ in range(2000)])
    standard_error = draws.std(dim=0) / len(draws) ** 0.5
    assert (standard_error > 0).all()  # the draws do vary
    error = (draws.mean(dim=0) - expected).abs()
    assert (error < 4 * standard_error).all(), error / standard_error


def test_updates_without_the_penalty_are_plain_forward_passes():
    """No penalty, no Jacobian graph: the objective is the loss's own node, not loss + 0 · penalty."""
    trial = small_grokalign(grokalign_every=1000)
    x, y = trial.batches[0]
    expected = trial.loss_fn(trial.model(x), y)
    objectives = [trial.method.objective(trial.model, x, y, trial.loss_fn) for _ in range(20)]
    plain = [o for o in objectives if o.grad_fn.name() == expected.grad_fn.name()]
    assert len(plain) >= 19  # this seed's coins: a penalised update has probability 1/1000 each
    assert all(torch.equal(o, expected) for o in plain)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"grokalign_subset": 400}, "grokalign_subset: must be at most 399 (below the batch size of 400"),
        ({"grokalign_every": 0}, "grokalign_every: must be > 0"),
        ({"grokalign_subset": -1}, "grokalign_subset: must be >= 0"),
    ],
)
def test_cheaper_penalty_settings_out_of_range_are_refused(settings, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        resolve(config_of(task="xor", method="grokalign", **settings))


def test_cheaper_penalty_settings_at_their_neutral_values_leave_a_trials_identity_unchanged():
    default = identity(resolve(config_of(method="grokalign")))
    assert "grokalign_subset" not in default and "grokalign_every" not in default
    neutral = identity(resolve(config_of(method="grokalign", grokalign_subset=0, grokalign_every=1)))
    assert neutral == default
    assert identity(resolve(config_of(method="grokalign", grokalign_every=4)))["grokalign_every"] == 4
