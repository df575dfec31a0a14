"""GrokAlign: add λ · mean over the batch of ‖J_f(x)‖_F, the input-output Jacobian norm at each training point
(for a model over tokens, the Jacobian of the logits with respect to the embedded sequence, the paper's choice).

The norm comes from `grokbench.jacobian`'s estimators (the authors' output-space projection by default); the
training forward pass is shared with the estimator, not run twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from grokbench import jacobian
from grokbench.config import TrialConfig
from grokbench.losses import LossFn
from grokbench.methods.base import Method, input_space
from grokbench.settings import Settings, one_of, positive, setting

ESTIMATORS = ("projection", "exact", "hutchinson", "hutchinson_shared")

# sqrt has an infinite slope at 0; the authors' clamp keeps the penalty's gradient finite
MIN_SQUARED_NORM = 1e-12


@dataclass(frozen=True)
class GrokAlignSettings(Settings):
    grokalign_estimator: str = setting("projection", "projection (the authors') | exact | hutchinson | "
                                                     "hutchinson_shared")
    grokalign_projections: int = setting(1, "random projections per point (projection estimator)")

    def check(self) -> None:
        one_of("grokalign_estimator", self.grokalign_estimator, ESTIMATORS)
        positive("grokalign_projections", self.grokalign_projections)


class GrokAlign(Method):
    name = "grokalign"
    Settings = GrokAlignSettings
    requires = frozenset({"input_jacobian"})

    def __init__(self, cfg: TrialConfig, generator: torch.Generator):
        super().__init__(cfg, generator)
        self.estimate = jacobian.estimator(self.settings.grokalign_estimator, self.settings.grokalign_projections)

    @classmethod
    def default_lam(cls, cfg: TrialConfig) -> float:
        return 1e-4 if cfg.loss == "mse" else 1e-3  # the authors' Table-1 settings

    def objective(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn) -> torch.Tensor:
        space = input_space(model, x)  # for a model over tokens: the Jacobian with respect to the input embedding
        out, squared_norm = self.estimate(space.forward, space.point, self.generator)
        penalty = squared_norm.clamp_min(MIN_SQUARED_NORM).sqrt().mean()
        return loss_fn(out, y) + self.lam * penalty
