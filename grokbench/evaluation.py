"""Evaluators: what a task measures at each evaluation, as named 0-dim device tensors.

The training loop calls its task's evaluator and reads every figure in one host transfer; it knows none of them
by name except the ones the task's grokking criterion reads.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from grokbench.geometry import geometry
from grokbench.losses import LossFn, accuracy, zero_loss_fraction


class Evaluator(Protocol):
    def __call__(self, model: nn.Module) -> dict[str, torch.Tensor]: ...


def train_test_metrics(
    train_out: torch.Tensor, test_out: torch.Tensor, y_train: torch.Tensor, y_test: torch.Tensor, loss_fn: LossFn
) -> dict[str, torch.Tensor]:
    metrics = {
        "train_acc": accuracy(train_out, y_train),
        "test_acc": accuracy(test_out, y_test),
        "train_loss": loss_fn(train_out, y_train),
        "test_loss": loss_fn(test_out, y_test),
    }
    if not y_train.is_floating_point():  # class outputs: how much of the training set softmax collapse has silenced
        metrics["train_zero_loss_fraction"] = zero_loss_fraction(train_out, y_train)
    return metrics


class Classification:
    """Accuracy and loss on the full train and test sets, accuracy on a perturbed copy of the first test points,
    all in one batched pass on clean inputs; then input-space geometry on a probe of training points (skipped
    when the network has diverged: it is undefined there, and the eigen-solver would raise)."""

    def __init__(self, data, loss_fn: LossFn, noisy_test: torch.Tensor, probe_size: int):
        self.y_train, self.y_test = data.y_train, data.y_test
        self.n_train, self.n_test = len(data.x_train), len(data.x_test)
        self.inputs = torch.cat([data.x_train, data.x_test, noisy_test])
        self.loss_fn = loss_fn
        self.probe = data.x_train[:probe_size]

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> dict[str, torch.Tensor]:
        out = model(self.inputs)
        train_out = out[: self.n_train]
        test_out = out[self.n_train : self.n_train + self.n_test]
        noisy_out = out[self.n_train + self.n_test :]
        metrics = train_test_metrics(train_out, test_out, self.y_train, self.y_test, self.loss_fn)
        metrics["noisy_test_acc"] = accuracy(noisy_out, self.y_test[: len(noisy_out)])
        if bool(torch.isfinite(out).all() & torch.isfinite(torch.stack(list(metrics.values()))).all()):
            metrics.update(geometry(model, self.probe))
        return metrics
