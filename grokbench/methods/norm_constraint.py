"""Omnigrok's weight-norm constraint (Liu, Michaud and Tegmark 2022): after every update the weights are rescaled
to a fixed total norm, with no weight decay.

The norm counts every trained parameter (biases included; a frozen embedding is not trained, so it does not
count), as one vector. Its target is `norm_constraint_multiple` × the norm the model would have at init scale 1
(its initial norm ÷ `init_scale`), fixed at the start and saved with the trial. Omnigrok holds the norm instead
of decaying it, so a weight decay the task or a preset sets becomes 0 (logged, and recorded as the trial's weight
decay); a non-zero weight decay that a user chose is refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from grokbench.config import ConfigError, TrialConfig
from grokbench.methods.base import Method
from grokbench.settings import Settings, positive, setting
from grokbench.tasks import Task

log = logging.getLogger("grokbench.methods.norm_constraint")


@dataclass(frozen=True)
class NormConstraintSettings(Settings):
    norm_constraint_multiple: float = setting(
        1.0, "the total weight norm held, as a multiple of the model's norm at init scale 1 (initial norm ÷ init scale)"
    )

    def check(self) -> None:
        positive("norm_constraint_multiple", self.norm_constraint_multiple)


def total_norm(params: list[torch.Tensor]) -> torch.Tensor:
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p) for p in params]))


class NormConstraint(Method):
    name = "norm_constraint"
    title = "Norm constraint"
    description = "Omnigrok: hold the total weight norm fixed after every update, no weight decay"
    Settings = NormConstraintSettings

    def __init__(self, cfg: TrialConfig, generator: torch.Generator):
        super().__init__(cfg, generator)
        self.target: torch.Tensor | None = None

    @classmethod
    def adjusted(cls, cfg: TrialConfig, task: Task) -> TrialConfig:
        if not cfg.weight_decay:
            return cfg
        if "weight_decay" in cfg.given:
            raise ConfigError(
                "weight_decay",
                f"norm_constraint holds the weight norm fixed instead of decaying it (Omnigrok), so it runs without "
                f"weight decay; drop --weight-decay {cfg.weight_decay:g} or set it to 0",
            )
        log.warning("norm_constraint: weight decay %g from %s's defaults set to 0", cfg.weight_decay, task.name)
        return cfg.replace(weight_decay=0.0)

    def on_start(self, model: nn.Module) -> None:
        with torch.no_grad():
            initial = total_norm(trained(list(model.parameters())))
        self.target = initial * (self.settings.norm_constraint_multiple / self.cfg.init_scale)

    @torch.no_grad()
    def after_step(self, params: list[torch.Tensor]) -> None:
        params = trained(params)
        torch._foreach_mul_(params, self.target / total_norm(params))

    def state_dict(self) -> dict[str, Any]:
        return {"target": self.target}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.target = state["target"]


def trained(params: list[torch.Tensor]) -> list[torch.Tensor]:
    return [p for p in params if p.requires_grad]
