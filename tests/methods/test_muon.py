"""Muon: torch.optim.Muon on the hidden weight matrices, the trial's optimiser on the rest."""

import numpy as np
import pytest
import torch
from helpers import parameters, straight_and_resumed
from torch import nn

from grokbench.config import ConfigError
from grokbench.methods.muon import (
    CpuBfloat16Muon,
    Float64Muon,
    Muon,
    hidden_matrices,
    muon_kind,
    orthogonalised_bfloat16,
)
from grokbench.resolve import config_of, resolve
from grokbench.tasks import TASKS, Task
from grokbench.train import Trial

TINY_MLP = dict(task="modarith", p=11, train_fraction=0.5, architecture="mlp", warmup_steps=0)
TINY_TRANSFORMER = dict(task="modarith", p=11, train_fraction=0.5, d_model=16, n_heads=2, d_mlp=32)


def shapes(params):
    return [tuple(p.shape) for p in params]


def test_hidden_matrices_leave_out_the_embeddings_and_the_output_layer_but_not_a_dense_first_layer():
    cfg = resolve(config_of(**TINY_MLP))
    assert shapes(hidden_matrices(TASKS["modarith"].build_model(cfg))) == [(200, 22), (200, 200)]
    transformer = TASKS["modarith"].build_model(resolve(config_of(**TINY_TRANSFORMER)))
    names = {id(p): name for name, p in transformer.named_parameters()}
    assert sorted(names[id(p)] for p in hidden_matrices(transformer)) == [
        "blocks.0.k_weight",
        "blocks.0.mlp_in_weight",
        "blocks.0.mlp_out_weight",
        "blocks.0.out_weight",
        "blocks.0.q_weight",
        "blocks.0.v_weight",
    ]
    assert hidden_matrices(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))) != []
    assert hidden_matrices(nn.Linear(4, 2)) == []


def test_muon_steps_the_hidden_matrices_with_the_trials_weight_decay_and_adamw_the_rest():
    trial = Trial(config_of(**TINY_MLP, method="muon", weight_decay=0.3, lr=2e-3, muon_lr=0.05, muon_ns_steps=3))
    muon, rest = trial.optimizer.optimizers
    assert type(muon) is CpuBfloat16Muon and type(rest) is torch.optim.AdamW
    assert shapes(muon.param_groups[0]["params"]) == [(200, 22), (200, 200)]
    assert shapes(rest.param_groups[0]["params"]) == [(11, 200)]
    group = muon.param_groups[0]
    assert (group["lr"], group["weight_decay"], group["ns_steps"], group["adjust_lr_fn"]) == (0.05, 0.3, 3, "original")
    assert (rest.param_groups[0]["lr"], rest.param_groups[0]["weight_decay"]) == (2e-3, 0.3)
    before = parameters(trial)
    trial.train_epoch()
    assert not torch.equal(before, parameters(trial))


def test_a_model_whose_only_parameter_is_a_hidden_matrix_trains_on_muon_alone():
    trial = Trial(config_of(task="polynomial", method="muon", max_epochs=2))  # its output weights are fixed
    assert [type(o) for o in trial.optimizer.optimizers] == [CpuBfloat16Muon]
    before = parameters(trial)
    trial.run()
    assert not torch.equal(before, parameters(trial))


def test_a_task_whose_model_has_no_hidden_matrix_is_refused():
    class Linear(Task):
        name, defaults, losses = "linear", TASKS["xor"].defaults, ("mse",)
        Settings = TASKS["xor"].Settings

        def build_model(self, cfg):
            return nn.Linear(2, 1)

    cfg = resolve(config_of(task="xor"))
    with pytest.raises(ConfigError, match="method: muon updates hidden weight matrices, and task linear's model has"):
        Muon.check(cfg, Linear())


def test_bad_muon_settings_are_refused():
    with pytest.raises(ConfigError, match="muon_adjust_lr_fn"):
        resolve(config_of(task="xor", method="muon", muon_adjust_lr_fn="none"))
    with pytest.raises(ConfigError, match="muon_momentum"):
        resolve(config_of(task="xor", method="muon", muon_momentum=1))


def test_a_resumed_trial_restores_both_optimizers_and_equals_the_uninterrupted_run_bit_for_bit():
    cfg = config_of(**{**TINY_MLP, "warmup_steps": 5}, method="muon", batch_size=20, max_epochs=6, eval_every=2)
    run = straight_and_resumed(cfg, stop_at_epoch=2)
    # each optimiser warmed up to its own learning rate
    assert [g["lr"] for g in run.resumed.optimizer.param_groups] == [0.02, run.resumed.cfg.lr]
    assert torch.equal(parameters(run.straight), parameters(run.resumed))
    assert run.seen == run.straight_seen


def newton_schulz_reference(g: np.ndarray, steps: int) -> np.ndarray:
    """Keller Jordan's quintic iteration, written out in float64 numpy: X ← aX + (bA + cA²)X with A = XXᵀ, on the
    wide orientation of G scaled to unit Frobenius norm."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.T if g.shape[0] > g.shape[1] else g
    x = x / np.linalg.norm(x)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if g.shape[0] > g.shape[1] else x


def test_the_float64_iteration_takes_torchs_muon_step_with_newton_schulz_in_float64():
    torch.manual_seed(0)
    w0, grad = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    lr, wd, momentum = 0.02, 0.1, 0.95
    steps = {}
    for kind in (Float64Muon, torch.optim.Muon):
        w = nn.Parameter(w0.clone())
        w.grad = grad.clone()
        kind([w], lr=lr, weight_decay=wd, momentum=momentum, nesterov=True, ns_steps=5).step()
        steps[kind] = w.detach()
    # first step: the buffer is (1 − μ)g, so Nesterov's update is g + μ(buffer − g) = (1 − μ²)g; the 5×3 matrix is
    # tall, so its lr is scaled by √(5/3)
    update = newton_schulz_reference((1 - momentum**2) * grad.numpy(), steps=5)
    expected = w0.numpy() * (1 - lr * wd) - lr * np.sqrt(5 / 3) * update
    np.testing.assert_allclose(steps[Float64Muon].numpy(), expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(steps[torch.optim.Muon], steps[Float64Muon], rtol=0, atol=2e-3)  # bfloat16's 8 bits
    assert not torch.equal(steps[torch.optim.Muon], steps[Float64Muon])


def test_muon_ns_precision_float64_builds_the_float64_iteration_and_resumes_bit_for_bit():
    cfg = config_of(**TINY_MLP, method="muon", muon_ns_precision="float64", max_epochs=4)
    assert type(Trial(cfg).optimizer.optimizers[0]) is Float64Muon
    run = straight_and_resumed(cfg, stop_at_epoch=2)
    assert torch.equal(parameters(run.straight), parameters(run.resumed))
    assert run.seen == run.straight_seen


def to_bfloat16(x) -> np.ndarray:
    """Round to bfloat16, to nearest even, through float32 (as torch converts a float64 tensor), as float64."""
    bits = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return rounded.astype(np.uint32).view(np.float32).astype(np.float64)


def bfloat16_newton_schulz_reference(g: np.ndarray, steps: int, eps: float = 1e-7) -> np.ndarray:
    """torch's iteration with every tensor it keeps in bfloat16, each product and sum exact (float64: the operands
    have 8 significant bits) and rounded once, at torch's float32 coefficients."""
    a, b, c = (float(np.float32(k)) for k in (3.4445, -4.7750, 2.0315))
    x = to_bfloat16(g.T if g.shape[0] > g.shape[1] else g)
    x = to_bfloat16(x / max(to_bfloat16(np.sqrt((x**2).sum())), eps))
    for _ in range(steps):
        gram = to_bfloat16(x @ x.T)
        polynomial = to_bfloat16(c * gram @ gram + b * gram)
        x = to_bfloat16(a * x + polynomial @ x)
    return x.T if g.shape[0] > g.shape[1] else x


def test_the_cpu_bfloat16_iteration_rounds_to_bfloat16_where_torchs_does_with_float32_sums():
    torch.manual_seed(0)
    grad = torch.randn(6, 4, dtype=torch.float64)
    ours = orthogonalised_bfloat16(grad, (3.4445, -4.7750, 2.0315), 5, 1e-7)
    assert ours.dtype == torch.bfloat16 and ours.shape == (6, 4)
    reference = bfloat16_newton_schulz_reference(grad.numpy(), steps=5)
    # float32 sums of 4 to 6 terms may round once where the exact sum does not: at most one bfloat16 step apart
    # (2⁻⁸ to 2⁻⁷ of an entry), and on nearly every entry the same
    got = ours.double().numpy()
    np.testing.assert_allclose(got, reference, rtol=2**-7, atol=0)
    assert (got == reference).mean() >= 0.9
    # torch's own bfloat16 iteration, step for step, is near it too; float64's is not bfloat16
    torchs = torch.optim._muon._zeropower_via_newtonschulz(grad, (3.4445, -4.7750, 2.0315), 5, 1e-7)
    torch.testing.assert_close(ours, torchs, rtol=2**-7, atol=2**-9)
    float64 = Float64Muon.orthogonalised(grad, (3.4445, -4.7750, 2.0315), 5, 1e-7)
    assert not np.array_equal(got, float64.numpy())


def test_muon_on_a_cpu_takes_the_cpu_bfloat16_iteration_and_resumes_bit_for_bit():
    cfg = config_of(**TINY_MLP, method="muon", max_epochs=4)
    assert type(Trial(cfg).optimizer.optimizers[0]) is CpuBfloat16Muon
    assert muon_kind("bfloat16", torch.device("cuda")) is torch.optim.Muon  # a GPU's bfloat16 products are fast
    run = straight_and_resumed(cfg, stop_at_epoch=2)
    assert torch.equal(parameters(run.straight), parameters(run.resumed))
