"""The MNIST task exactly as SPEC.md describes it, read from the offline copy."""

import pytest
import torch
from torch import nn

from grokbench.resolve import config_of, resolve
from grokbench.tasks import TASKS
from grokbench.tasks.base import data_root
from grokbench.tasks.mnist import _mnist_splits

# class counts of MNIST's 60 000-image training split
TRAIN_CLASS_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_loader_reads_offline_copy_with_known_class_counts(mnist_available):
    train, test = _mnist_splits(data_root(config_of()))
    assert torch.bincount(train.targets).tolist() == TRAIN_CLASS_COUNTS
    assert len(test.targets) == 10_000


def test_data_is_first_1024_of_each_split_normalised_and_flattened(mnist_available):
    cfg = resolve(config_of(task="mnist"))
    data = TASKS["mnist"].load_data(cfg)
    train, test = _mnist_splits(data_root(cfg))
    assert data.x_train.shape == (1024, 784) and data.x_test.shape == (1024, 784)
    assert data.x_train.dtype == torch.float64
    assert torch.equal(data.y_train, train.targets[:1024]) and torch.equal(data.y_test, test.targets[:1024])
    expected = (train.data[:1024].double() / 255 - 0.1307) / 0.3081
    assert torch.allclose(data.x_train, expected.reshape(1024, 784))


def test_model_is_bias_free_relu_mlp_with_scaled_default_init():
    cfg = resolve(config_of(task="mnist", init_scale=8, seed=3))
    torch.manual_seed(3)
    model = TASKS["mnist"].build_model(cfg)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 196), (196, 196), (196, 196), (196, 10)]
    assert all(m.bias is None for m in linears)
    assert sum(isinstance(m, nn.ReLU) for m in model) == 3
    torch.manual_seed(3)
    reference = [
        nn.Linear(a, b, bias=False, dtype=torch.float64) for a, b in [(784, 196), (196, 196), (196, 196), (196, 10)]
    ]
    for ours, ref in zip(linears, reference, strict=False):
        assert torch.equal(ours.weight, 8 * ref.weight)


def test_mnist_trains_a_few_epochs_on_the_offline_copy(mnist_available):
    from grokbench.train import Trial

    trial = Trial(config_of(task="mnist", max_epochs=2, eval_every=1))
    summary = trial.run()
    assert summary["steps"] == 8  # 1024 / 256 = 4 updates per epoch
    assert summary["status"] == "censored"
    assert 0.0 <= summary["final_test_acc"] <= 1.0


# what the code before settings were owned by their components gave (commit 7ed46c0, this machine, float64):
# test accuracy, train loss and Jacobian norm after 3 epochs (12 updates), one thread
PINNED_SHORT_RUNS = {
    "grokalign": ({"lam": 0.01}, (0.4130859375, 24.982795756197593, 424.4035701396964)),
    "adversarial": ({}, (0.4248046875, 25.26787307664887, 426.4755350220487)),
    "grokfast": ({"grokfast_variant": "ma", "grokfast_window": 3}, (0.396484375, 27.90573907702966, 419.0091094430706)),
}


@pytest.mark.parametrize("method", sorted(PINNED_SHORT_RUNS))
def test_a_short_mnist_run_is_unchanged(method, mnist_available):
    from grokbench.train import Trial

    settings, expected = PINNED_SHORT_RUNS[method]
    trial = Trial(config_of(task="mnist", method=method, max_epochs=3, eval_every=1, threads=1, **settings))
    trial.run()
    got = tuple(trial.last_metrics[k] for k in ("test_acc", "train_loss", "jacobian_norm"))
    assert got == pytest.approx(expected, rel=1e-9)  # float64 rounding may differ across CPUs in the last bits


@pytest.mark.slow
@pytest.mark.long  # 75 s of training: run on demand (`python -m pytest -m long`), not in the default suite
def test_the_documented_grokalign_run_still_groks_at_epoch_790(mnist_available):
    """`grokbench run mnist --method grokalign --lam 0.1 --loss ce --seed 0 --threads 1`: ≈ 75 s of training."""
    from grokbench.train import Trial

    summary = Trial(config_of(task="mnist", method="grokalign", lam=0.1, loss="ce", seed=0, threads=1)).run()
    assert (summary["status"], summary["epochs_to_memorise"], summary["epochs_to_grok"]) == ("grokked", 20, 790)
