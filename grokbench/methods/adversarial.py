"""Adversarial (input-noise) training (Tan & Huang 2024): at each epoch's start σ = λ·max(0.06·(1−a), 0.03)
from the clean train accuracy a; every batch gets fresh noise σ·N(0, I), added out of place. For a model over
tokens the noise goes on the input embedding, scaled per point by its typical coordinate size.

λ scales the authors' schedule (1 by default). The accuracy pass is part of the method, so it counts as
training time.
"""

from __future__ import annotations

import torch
from torch import nn

from grokbench.config import TrialConfig
from grokbench.losses import LossFn, accuracy, correct
from grokbench.methods.base import Method, input_space
from grokbench.tasks import TaskData


def noise_scale(train_accuracy: torch.Tensor) -> torch.Tensor:
    return torch.clamp(0.06 * (1 - train_accuracy), min=0.03)


def clean_accuracy_for_sigma(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The clean train accuracy, or a lower bound on it that gives the same σ.

    σ is flat (0.03) once accuracy reaches 1/2. On the CPU, where reading a count costs nothing, the first half
    of the points is scored first and, when it alone holds half the points correct, the second half is skipped:
    after memorisation this halves the method's extra forward pass. On a GPU the whole pass runs and σ stays a
    device tensor, because reading the count would stall the device every epoch.
    """
    if x.device.type != "cpu":
        return accuracy(model(x), y)
    half = (len(x) + 1) // 2
    out = model(x[:half])  # its dtype, not the inputs': token inputs are integers
    first = int(correct(out, y[:half]).sum())
    if first >= len(x) / 2:
        return torch.tensor(first / len(x), dtype=out.dtype)
    rest = int(correct(model(x[half:]), y[half:]).sum())
    return torch.tensor((first + rest) / len(x), dtype=out.dtype)


def typical_size(embedded: torch.Tensor) -> torch.Tensor:
    """Per point, the root mean square of its embedded coordinates (B, 1): noise σ·size·N(0, I) is then σ
    relative to the embedding's own scale, as σ·N(0, I) is on inputs normalised to unit variance, and keeps that
    meaning as training grows or shrinks the embedding."""
    return embedded.detach().square().mean(dim=1, keepdim=True).sqrt()


class Adversarial(Method):
    name = "adversarial"
    title = "Adversarial Training"
    description = "train on inputs with noise (Tan & Huang 2024)"
    requires = frozenset({"accuracy", "input_noise"})  # σ follows the train accuracy; noise goes on the inputs

    def __init__(self, cfg: TrialConfig, generator: torch.Generator):
        super().__init__(cfg, generator)
        self.sigma = torch.tensor(0.0)
        self._noise: dict[torch.Size, torch.Tensor] = {}  # per batch shape: float32 draws
        self._noisy: dict[torch.Size, torch.Tensor] = {}  # and x + σ·noise

    @classmethod
    def default_lam(cls, cfg: TrialConfig) -> float:
        return 1.0

    @torch.no_grad()
    def on_epoch_start(self, model: nn.Module, train: TaskData) -> None:
        self.sigma = self.lam * noise_scale(clean_accuracy_for_sigma(model, train.x_train, train.y_train))

    def objective(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn) -> torch.Tensor:
        space = input_space(model, x)
        # noise drawn in float32 (several times cheaper than float64), x + σ·noise fused into a reused buffer:
        # a fresh 1.6 MB tensor per batch costs page faults comparable to the draw itself
        noise = self._buffer(self._noise, space.point, torch.float32).normal_(generator=self.generator)
        if space.embedded:  # out of place: the embedding is trained through the noisy point
            return loss_fn(space.forward(torch.addcmul(space.point, noise, self.sigma * typical_size(space.point))), y)
        return loss_fn(model(torch.addcmul(x, noise, self.sigma, out=self._buffer(self._noisy, x, x.dtype))), y)

    @staticmethod
    def _buffer(buffers: dict[torch.Size, torch.Tensor], like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if like.shape not in buffers:
            buffers[like.shape] = torch.empty(like.shape, dtype=dtype, device=like.device)
        return buffers[like.shape]
