"""Each method's own arithmetic against a hand computation."""

import pytest
import torch

from grokbench.config import TrialConfig, resolve
from grokbench.losses import LOSSES, accuracy
from grokbench.methods import METHODS
from grokbench.methods.adversarial import clean_accuracy_for_sigma, noise_scale
from grokbench.train import Trial


def grokfast(**settings):
    cfg = resolve(TrialConfig.of(task="xor", method="grokfast", **settings))
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
    trial = Trial(TrialConfig.of(task="xor", method="adversarial", lam=2.0))
    before = trial.data.x_train.clone()
    with torch.no_grad():
        clean = (torch.sign(trial.model(before).squeeze(1)) == trial.data.y_train).double().mean()
    trial.train_epochs(1)
    assert trial.method.sigma.item() == pytest.approx(2.0 * max(0.06 * (1 - clean.item()), 0.03), rel=1e-6)
    assert torch.equal(trial.data.x_train, before)


@pytest.mark.parametrize("train_epochs", [0, 60])  # before (accuracy < 1/2) and after memorising
def test_adversarial_sigma_from_half_pass_equals_sigma_from_full_pass(train_epochs):
    trial = Trial(TrialConfig.of(task="xor", method="adversarial"))
    trial.train_epochs(train_epochs)
    x, y = trial.data.x_train, trial.data.y_train
    with torch.no_grad():
        full = accuracy(trial.model(x), y)
        fast = clean_accuracy_for_sigma(trial.model, x, y)
    assert noise_scale(fast).item() == noise_scale(full).item()
    assert fast.item() <= full.item()


def test_adversarial_noise_is_fresh_per_batch():
    trial = Trial(TrialConfig.of(task="xor", method="adversarial"))
    trial.method.on_epoch_start(trial.model, trial.data)
    x, y = trial.batches[0]
    losses = [trial.method.objective(trial.model, x, y, LOSSES["mse"]).item() for _ in range(2)]
    assert losses[0] != losses[1]


def test_grokalign_objective_is_loss_plus_lambda_times_mean_jacobian_norm():
    """With the exact estimator the penalty is deterministic: compare against an explicit computation."""
    trial = Trial(TrialConfig.of(task="xor", method="grokalign", lam=0.3, grokalign_estimator="exact"))
    x, y = trial.batches[0]
    objective = trial.method.objective(trial.model, x[:16], y[:16], LOSSES["mse"])
    xg = x[:16].clone().requires_grad_(True)
    out = trial.model(xg)
    (grad,) = torch.autograd.grad(out.sum(), xg)  # one output: J = ∇ₓf
    expected = LOSSES["mse"](out, y[:16]) + 0.3 * grad.norm(dim=1).mean()
    assert objective.item() == pytest.approx(expected.item(), rel=1e-5)
