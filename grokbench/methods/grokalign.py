"""GrokAlign: add λ · mean over the batch of ‖J_f(x)‖_F, the input-output Jacobian norm at each training point
(for a model over tokens, the Jacobian of the logits with respect to the embedded sequence, the paper's choice).

The norm comes from `grokbench.jacobian`'s estimators (the authors' output-space projection by default); the
training forward pass is shared with the estimator, not run twice.

Two settings make the penalty cheaper, each an unbiased estimate of the authors' penalty (in value and gradient):
`grokalign_subset` M puts it on M random points of each batch (the loss still on every point), and
`grokalign_every` K puts it on a random 1/K of the updates, weighted by K.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from grokbench import jacobian
from grokbench.config import TrialConfig
from grokbench.losses import LossFn
from grokbench.methods.base import InputSpace, Method, input_space
from grokbench.settings import Settings, at_most, non_negative, one_of, positive, setting
from grokbench.tasks import Task

ESTIMATORS = ("projection", "exact", "hutchinson", "hutchinson_shared")

# sqrt has an infinite slope at 0; the authors' clamp keeps the penalty's gradient finite
MIN_SQUARED_NORM = 1e-12

COIN_SEED_OFFSET = 0x5851F42D  # the stream that picks penalised updates differs from the trial's other streams


@dataclass(frozen=True)
class GrokAlignSettings(Settings):
    grokalign_estimator: str = setting(
        "projection", "projection (the authors') | exact | hutchinson | hutchinson_shared"
    )
    grokalign_projections: int = setting(1, "random projections per point (projection estimator)")
    grokalign_subset: int = setting(
        0, "the penalty on this many random points of each batch, the loss on all (0: the whole batch)", neutral=0
    )
    grokalign_every: int = setting(
        1,
        "the penalty on a random 1/K of the updates (each with probability 1/K), "
        "weighted by K so its expected gradient is unchanged (1: every update)",
        neutral=1,
    )

    def check(self) -> None:
        one_of("grokalign_estimator", self.grokalign_estimator, ESTIMATORS)
        positive("grokalign_projections", self.grokalign_projections)
        non_negative("grokalign_subset", self.grokalign_subset)
        positive("grokalign_every", self.grokalign_every)


class GrokAlign(Method):
    name = "grokalign"
    title = "GrokAlign"
    description = "penalise the norm of the input-output Jacobian (GrokAlign)"
    Settings = GrokAlignSettings
    requires = frozenset({"input_jacobian"})

    def __init__(self, cfg: TrialConfig, generator: torch.Generator):
        super().__init__(cfg, generator)
        self.estimate = jacobian.estimator(self.settings.grokalign_estimator, self.settings.grokalign_projections)
        # the coin is tossed on the CPU whatever the device, so choosing the update's path never waits for a GPU
        # (and a seed penalises the same updates on every device)
        self.coins = torch.Generator().manual_seed(cfg.seed + COIN_SEED_OFFSET)

    @classmethod
    def default_lam(cls, cfg: TrialConfig) -> float:
        return 1e-4 if cfg.loss == "mse" else 1e-3  # the authors' Table-1 settings

    @classmethod
    def check(cls, cfg: TrialConfig, task: Task) -> None:
        super().check(cfg, task)
        at_most(
            "grokalign_subset",
            cfg.method_settings.grokalign_subset,
            cfg.batch_size - 1,
            f"below the batch size of {cfg.batch_size}; 0 puts the penalty on the whole batch",
        )

    @property
    def cost_period(self) -> int:
        return self.settings.grokalign_every

    def objective(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn) -> torch.Tensor:
        every = self.settings.grokalign_every
        if every > 1 and torch.rand((), generator=self.coins).item() >= 1 / every:
            return loss_fn(model(x), y)  # no penalty: a plain forward, no graph kept for a double backward
        space = input_space(model, x)  # for a model over tokens: the Jacobian with respect to the input embedding
        subset = self.settings.grokalign_subset
        if 0 < subset < len(x):
            out, y, squared_norm = self._estimate_on_subset(space, y, subset)
        else:
            out, squared_norm = self.estimate(space.forward, space.point, self.generator)
        penalty = squared_norm.clamp_min(MIN_SQUARED_NORM).sqrt().mean()
        return loss_fn(out, y) + self.lam * every * penalty

    def _estimate_on_subset(self, space: InputSpace, y: torch.Tensor, subset: int):
        """The outputs of every point, reordered with their targets, and the squared-norm estimate at `subset`
        random points: those go through the estimator's input-gradient path, the others through a plain forward,
        so the forward is shared and the double backward runs on the subset's rows only (measured cheaper than
        one forward of the whole batch with the subset's inputs needing a gradient, whose double backward runs
        on every row)."""
        order = torch.randperm(len(y), generator=self.generator, device=y.device)
        chosen, others = order[:subset], order[subset:]
        out, squared_norm = self.estimate(space.forward, space.point.index_select(0, chosen), self.generator)
        out = torch.cat([out, space.forward(space.point.index_select(0, others))])
        return out, torch.cat([y.index_select(0, chosen), y.index_select(0, others)]), squared_norm

    def state_dict(self) -> dict[str, Any]:
        return {"coins": self.coins.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "coins" in state:  # saved before updates were chosen at random: the coin stream was never used
            self.coins.set_state(state["coins"].cpu())  # a generator state comes back moved to the trial's device
