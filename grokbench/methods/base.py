"""The interface every grokking intervention implements; the training loop calls only these hooks."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from grokbench.config import ConfigError, TrialConfig
from grokbench.losses import LossFn
from grokbench.settings import NoSettings, Settings
from grokbench.tasks import Task, TaskData


class Method:
    """Baseline training (the task's optimiser with its weight decay); interventions override the hooks.

    Per epoch the loop calls `on_epoch_start` once, then per batch `objective` (forward pass and loss),
    backward, `on_gradients`, and the optimiser step. Random draws use `self.generator` (saved with the trial).
    A method's own settings are a dataclass (`Settings`, field names prefixed with the method's name); what it
    needs of a task is named in `requires` (see `Task.capabilities`).
    """

    name: ClassVar[str] = "baseline"
    Settings: ClassVar[type[Settings]] = NoSettings
    requires: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, cfg: TrialConfig, generator: torch.Generator):
        self.cfg = cfg
        self.settings = cfg.method_settings
        self.lam = cfg.lam
        self.generator = generator

    @classmethod
    def default_lam(cls, cfg: TrialConfig) -> float:
        return 0.0

    @classmethod
    def check(cls, cfg: TrialConfig, task: Task) -> None:
        """Reject a task this method cannot apply to, or settings it cannot use (called by `config.resolve`)."""
        missing = sorted(cls.requires - task.capabilities)
        if missing:
            raise ConfigError("method", f"{cls.name} needs {' and '.join(m.replace('_', ' ') for m in missing)}, "
                                        f"which task {task.name} does not offer")

    @property
    def cost_period(self) -> int:
        """Updates over which this method's cost per update averages out (1: every update costs the same)."""
        return 1

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
