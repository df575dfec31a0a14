"""The presets of the newer interventions' published settings: modarith `prieto_mlp` and mnist `omnigrok`."""

import pytest
import torch
from torch import nn

from grokbench.config import identity
from grokbench.resolve import config_of, resolve
from grokbench.tasks import TASKS
from grokbench.train import Trial


def test_prieto_mlp_is_their_bias_free_mlp_over_one_hot_a_and_b():
    cfg = resolve(config_of(task="modarith", preset="prieto_mlp"))
    s = cfg.task_settings
    assert (s.p, s.op, s.train_fraction, s.architecture) == (113, "add", 0.4, "mlp")
    assert (cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.batch_size, cfg.softmax_precision) == (
        "adamw",
        0.01,
        0,
        5107,
        64,
    )
    torch.manual_seed(0)
    model = TASKS["modarith"].build_model(cfg)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(200, 226), (200, 200), (113, 200)]
    assert all(m.bias is None for m in linears)
    tokens = torch.tensor([[3, 5, 113]])
    code = torch.zeros(1, 226)
    code[0, 3] = code[0, 113 + 5] = 1
    torch.testing.assert_close(model(tokens), model.layers(code), rtol=0, atol=0)


@pytest.mark.parametrize(
    "arm, betas, eps",
    [
        ({"method": "orthograd"}, (0.9, 0.999), 1e-8),  # what their wrapper ran (their issue #11)
        ({"loss": "stablemax"}, (0.9, 0.999), 1e-25),
        ({}, (0.9, 0.99), 1e-25),
        ({"method": "grokfast"}, (0.9, 0.99), 1e-25),
        ({"method": "orthograd", "adam_eps": 1e-25, "beta2": 0.99}, (0.9, 0.99), 1e-25),  # given values win
    ],
)
def test_prieto_mlp_gives_each_arm_the_adam_settings_their_script_ran(arm, betas, eps):
    cfg = resolve(config_of(task="modarith", preset="prieto_mlp", **arm))
    assert ((cfg.beta1, cfg.beta2), cfg.adam_eps) == (betas, eps)
    assert Trial(cfg.replace(max_epochs=1)).optimizer.param_groups[0]["eps"] == eps


def test_the_default_adam_eps_is_torchs_and_leaves_a_trials_identity_alone():
    cfg = resolve(config_of(task="mnist"))
    assert cfg.adam_eps == 1e-8 and "adam_eps" not in identity(cfg)
    assert identity(resolve(config_of(task="mnist", adam_eps=1e-25)))["adam_eps"] == 1e-25


def test_omnigrok_is_the_grokfast_mnist_setting(mnist_available):
    cfg = resolve(config_of(task="mnist", preset="omnigrok"))
    s = cfg.task_settings
    assert (s.train_size, s.test_size, s.architecture) == (1000, 10_000, "omnigrok")
    assert (cfg.loss, cfg.init_scale, cfg.optimizer, cfg.lr, cfg.weight_decay) == ("mse", 8.0, "adamw", 1e-3, 0.01)
    assert (cfg.batch_size, cfg.dtype) == (200, "float32")
    torch.manual_seed(0)
    model = TASKS["mnist"].build_model(cfg)
    torch.manual_seed(0)
    unscaled = nn.Sequential(nn.Linear(784, 200), nn.ReLU(), nn.Linear(200, 200), nn.ReLU(), nn.Linear(200, 10))
    for ours, reference in zip(model.parameters(), unscaled.parameters(), strict=True):  # biases ×8 as well
        torch.testing.assert_close(ours.detach(), 8 * reference.detach(), rtol=0, atol=0)
    data = TASKS["mnist"].load_data(cfg)
    assert (len(data.x_train), len(data.x_test), data.x_train.dtype) == (1000, 10_000, torch.float32)
