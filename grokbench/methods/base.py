"""The interface every grokking intervention implements; the training loop calls only these hooks."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from grokbench.config import TrialConfig
from grokbench.losses import LossFn
from grokbench.tasks import TaskData


class Method:
    """Baseline training (the task's optimiser with its weight decay); interventions override the hooks.

    Per epoch the loop calls `on_epoch_start` once, then per batch `objective` (forward pass and loss),
    backward, `on_gradients`, and the optimiser step. Random draws use `self.generator` (saved with the trial).
    """

    name: ClassVar[str] = "baseline"

    def __init__(self, cfg: TrialConfig, generator: torch.Generator):
        self.cfg = cfg
        self.lam = cfg.lam
        self.generator = generator

    @classmethod
    def default_lam(cls, cfg: TrialConfig) -> float:
        return 0.0

    @classmethod
    def check(cls, cfg: TrialConfig) -> None:
        """Reject settings this method cannot use (called by `config.resolve`)."""

    def on_epoch_start(self, model: nn.Module, train: TaskData) -> None:
        pass

    def objective(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn) -> torch.Tensor:
        return loss_fn(model(x), y)

    def on_gradients(self, grads: list[torch.Tensor]) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
