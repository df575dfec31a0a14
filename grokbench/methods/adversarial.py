"""Adversarial (input-noise) training (Tan & Huang 2024): at each epoch's start σ = λ·max(0.06·(1−a), 0.03)
from the clean train accuracy a; every batch gets fresh noise σ·N(0, I), added out of place.

λ scales the authors' schedule (1 by default). The accuracy pass is part of the method, so it counts as
training time.
"""

from __future__ import annotations

import torch
from torch import nn

from grokbench.config import TrialConfig
from grokbench.losses import LossFn, accuracy
from grokbench.methods.base import Method
from grokbench.tasks import TaskData


def noise_scale(train_accuracy: torch.Tensor) -> torch.Tensor:
    return torch.clamp(0.06 * (1 - train_accuracy), min=0.03)


class Adversarial(Method):
    name = "adversarial"
    strength = "a multiplier on the noise schedule σ"

    def __init__(self, cfg: TrialConfig, generator: torch.Generator):
        super().__init__(cfg, generator)
        self.sigma = torch.tensor(0.0)

    @classmethod
    def default_lam(cls, cfg: TrialConfig) -> float:
        return 1.0

    @torch.no_grad()
    def on_epoch_start(self, model: nn.Module, train: TaskData) -> None:
        # σ stays a device tensor: reading it on the host would stall the GPU every epoch
        self.sigma = self.lam * noise_scale(accuracy(model(train.x_train), train.y_train))

    def objective(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn) -> torch.Tensor:
        # drawn in float32 (several times cheaper than float64), then x + σ·noise in one fused op
        noise = torch.randn(x.shape, generator=self.generator, device=x.device, dtype=torch.float32)
        return loss_fn(model(torch.addcmul(x, noise.to(x.dtype), self.sigma)), y)
