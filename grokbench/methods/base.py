"""The interface every grokking intervention implements; the training loop calls only these hooks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from grokbench.config import ConfigError, TrialConfig
from grokbench.losses import LossFn
from grokbench.settings import NoSettings, Settings
from grokbench.tasks import Task, TaskData


class InputSpace(NamedTuple):
    """Where a method differentiates the network and adds noise: `forward` maps a batch of points in a continuous
    input space to the outputs, and `point` is this batch there. `embedded`: the points are the model's input
    embedding of discrete inputs rather than the data themselves."""

    forward: Callable[[torch.Tensor], torch.Tensor]
    point: torch.Tensor
    embedded: bool


def input_space(model: nn.Module, x: torch.Tensor) -> InputSpace:
    """The inputs themselves, or, for a model over tokens that splits its forward pass at its input embedding
    (`embed(x)` then `from_embeddings(e)`), the embedded batch: kept in the graph, so the loss still trains the
    embedding that produced it."""
    if not hasattr(model, "from_embeddings"):
        return InputSpace(model, x, embedded=False)
    return InputSpace(model.from_embeddings, model.embed(x), embedded=True)


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
        """Reject a task this method cannot apply to, or settings it cannot use (called by `resolve.resolve`)."""
        missing = sorted(cls.requires - task.capabilities)
        if missing:
            raise ConfigError(
                "method",
                f"{cls.name} needs {' and '.join(m.replace('_', ' ') for m in missing)}, "
                f"which task {task.name} does not offer",
            )

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
