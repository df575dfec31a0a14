"""⊥Grad: the gradient's component orthogonal to the weights, rescaled to the gradient's norm, then the trial's
own optimiser steps."""

import pytest
import torch
from helpers import parameters, straight_and_resumed

from grokbench.methods.orthograd import OrthoGrad, orthogonalised
from grokbench.resolve import config_of, resolve
from grokbench.train import Trial

TINY_MLP = dict(task="modarith", p=11, train_fraction=0.5, architecture="mlp", warmup_steps=0)

W = [[1.0, 2.0, 0.0, -1.0], [0.0, 1.0, 3.0, 0.0], [2.0, 0.0, 0.0, 1.0]]
G = [[0.5, -1.0, 2.0, 0.0], [1.0, 0.0, -0.5, 1.0], [0.0, 3.0, 1.0, -2.0]]
# w·w = 21, w·g = −5: g⊥ = (g + 5/21·w)·‖g‖/‖g + 5/21·w‖, worked out by hand in exact arithmetic
G_ORTHOGONAL = [
    [0.7594195322841164, -0.5389428938790504, 2.057781958447283, -0.2449740426722956],
    [1.0288909792236416, 0.2449740426722956, 0.22047663840506596, 1.0288909792236416],
    [0.4899480853445912, 3.0866729376709245, 1.0288909792236416, -1.8128079157749875],
]
# one SGD step of lr 0.1 on g⊥: w − 0.1·g⊥
W_AFTER_SGD = [
    [0.9240580467715883, 2.053894289387905, -0.20577819584472834, -0.9755025957327704],
    [-0.10288909792236417, 0.9755025957327704, 2.9779523361594933, -0.10288909792236417],
    [1.9510051914655409, -0.30866729376709245, -0.10288909792236417, 1.1812807915774988],
]


def test_one_step_on_a_3x4_tensor_gives_the_values_worked_out_by_hand():
    w = torch.nn.Parameter(torch.tensor(W, dtype=torch.float64))
    w.grad = torch.tensor(G, dtype=torch.float64)
    method = OrthoGrad(resolve(config_of(task="xor", method="orthograd")), torch.Generator())
    method.before_step([w])
    torch.testing.assert_close(w.grad, torch.tensor(G_ORTHOGONAL, dtype=torch.float64), rtol=0, atol=1e-14)
    torch.optim.SGD([w], lr=0.1).step()
    torch.testing.assert_close(w.detach(), torch.tensor(W_AFTER_SGD, dtype=torch.float64), rtol=0, atol=1e-14)


@pytest.mark.parametrize("shape", [(7,), (5, 3), (4, 3, 2), (64, 33)])
def test_the_new_gradient_is_orthogonal_to_the_weights_and_as_long_as_the_old(shape):
    generator = torch.Generator().manual_seed(sum(shape))
    for _ in range(5):
        w = torch.randn(shape, generator=generator, dtype=torch.float64) * 3
        g = torch.randn(shape, generator=generator, dtype=torch.float64)
        new = orthogonalised(w, g)
        assert abs(torch.dot(w.flatten(), new)) < 1e-12
        assert abs(new.norm() - g.norm()) < 1e-12


def test_the_trials_own_optimizer_steps_the_new_gradient():
    trial = Trial(config_of(**TINY_MLP, method="orthograd"))
    assert type(trial.optimizer) is torch.optim.AdamW
    reference = Trial(config_of(**TINY_MLP))
    x, y = reference.batches[0]
    reference.loss_fn(reference.model(x), y).backward()
    with torch.no_grad():
        for p in reference.params:
            p.grad.copy_(orthogonalised(p, p.grad).view_as(p))
    reference.optimizer.step()
    trial.train_epoch()
    torch.testing.assert_close(parameters(trial), parameters(reference), rtol=0, atol=0)


def test_a_resumed_trial_equals_the_uninterrupted_run_bit_for_bit():
    cfg = config_of(**TINY_MLP, method="orthograd", batch_size=20, max_epochs=6, eval_every=2)
    run = straight_and_resumed(cfg, stop_at_epoch=2)
    assert torch.equal(parameters(run.straight), parameters(run.resumed))
    assert run.seen == run.straight_seen
