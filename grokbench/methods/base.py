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

OptimizerFactory = Callable[[list[torch.Tensor]], torch.optim.Optimizer]


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

    The loop builds the optimiser through `make_optimizer` and calls `on_start` once on the new model (not on a
    restored one: its state comes from `load_state_dict`). Per epoch it calls `on_epoch_start` once, then per
    batch `objective` (forward pass and loss), backward, `on_gradients`, `before_step` (the parameters with their
    gradients), the optimiser step and `after_step`. Random draws use `self.generator` (saved with the trial).
    A method's own settings are a dataclass (`Settings`, field names prefixed with the method's name); what it
    needs of a task is named in `requires` (see `Task.capabilities`).
    """

    name: ClassVar[str] = "baseline"
    description: ClassVar[str] = ""  # one line for `grokbench run TASK --help`
    title: ClassVar[str] = ""  # its name in tables and figures (default: `name`)
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
    def adjusted(cls, cfg: TrialConfig, task: Task) -> TrialConfig:
        """The resolved config as this method runs it (called by `resolve.resolve` before the values are checked)."""
        return cfg

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

    def make_optimizer(self, model: nn.Module, trials_own: OptimizerFactory) -> torch.optim.Optimizer:
        """The optimiser of the model's parameters; `trials_own` builds the trial's (optimizer, lr, weight decay,
        betas, ε) over a list of them."""
        return trials_own(list(model.parameters()))

    def on_start(self, model: nn.Module) -> None:
        pass

    def on_epoch_start(self, model: nn.Module, train: TaskData) -> None:
        pass

    def objective(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn) -> torch.Tensor:
        return loss_fn(model(x), y)

    def on_gradients(self, grads: list[torch.Tensor]) -> None:
        pass

    def before_step(self, params: list[torch.Tensor]) -> None:
        pass

    def after_step(self, params: list[torch.Tensor]) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
