"""Muon (Jordan et al. 2024; for grokking, Tveit et al. 2025) as `torch.optim.Muon` on the hidden weight matrices.

Muon steps every 2-D weight but the input embedding and the output layer; a dense first layer counts as hidden.
The trial's own optimiser, with its lr and weight decay, steps the rest: embeddings, the output layer, biases and
norms. Under AdamW this is the split the Muon authors and Keller Jordan's reference use. Muon's weight decay is
the trial's `weight_decay` (not torch's default of 0.1), and its learning rate is its own (`muon_lr`: Muon's
scale, not AdamW's). A model's parameters are sorted by name and shape: those of an `nn.Embedding` or named
`…embedding` are embeddings, and the last 2-D parameter registered is the output layer unless the model names
another (`output_layer`). torch computes the
Newton–Schulz iteration in bfloat16; `muon_ns_precision: float64` runs the same update with the iteration in
float64 (`Float64Muon`), the check of whether grokking, which is precision-sensitive, notices the difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim._muon import _adjust_lr  # torch's own lr scaling by shape, so both iterations scale alike

from grokbench.config import ConfigError, TrialConfig
from grokbench.methods.base import Method, OptimizerFactory
from grokbench.settings import Settings, one_of, positive, setting
from grokbench.tasks import Task

ADJUST_LR = ("original", "match_rms_adamw")
NS_PRECISIONS = ("bfloat16", "float64")


@dataclass(frozen=True)
class MuonSettings(Settings):
    muon_lr: float = setting(0.02, "Muon's learning rate, on its own scale (Keller Jordan's reference: 0.02)")
    muon_momentum: float = setting(0.95, "Muon's momentum")
    muon_nesterov: bool = setting(True, "Nesterov momentum")
    muon_ns_steps: int = setting(5, "Newton–Schulz iterations per update")
    muon_adjust_lr_fn: str = setting(
        "original",
        "original (lr·√max(1, rows/cols), Keller Jordan's) | match_rms_adamw (lr·0.2·√max(rows, cols), Moonshot's)",
    )
    muon_ns_precision: str = setting(
        "bfloat16", "the Newton–Schulz iteration's precision: bfloat16 (torch's) | float64", neutral="bfloat16"
    )

    def check(self) -> None:
        positive("muon_lr", self.muon_lr)
        if not 0 <= self.muon_momentum < 1:
            raise ConfigError("muon_momentum", f"must be in [0, 1), got {self.muon_momentum}")
        positive("muon_ns_steps", self.muon_ns_steps)
        one_of("muon_adjust_lr_fn", self.muon_adjust_lr_fn, ADJUST_LR)
        one_of("muon_ns_precision", self.muon_ns_precision, NS_PRECISIONS)


def hidden_matrices(model: nn.Module) -> list[nn.Parameter]:
    """The trained 2-D weights that are neither the input embedding nor the output layer. The output layer is the
    last 2-D parameter, unless the model names it (`output_layer`; None: its output weights are fixed, as
    polynomial's mean over units)."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad and p.ndim == 2]
    output = getattr(model, "output_layer", named[-1][1] if named else None)
    return [p for name, p in named if p is not output and id(p) not in embeddings and not name.endswith("embedding")]


def orthogonalised_float64(update: torch.Tensor, coefficients: tuple[float, float, float], steps: int, eps: float):
    """torch's quintic Newton–Schulz iteration (`torch.optim._muon`), in float64 rather than bfloat16."""
    a, b, c = coefficients
    x = update.double()
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


class Float64Muon(torch.optim.Muon):
    """torch.optim.Muon's update (momentum, Nesterov, decoupled weight decay, its lr adjustment and its state) with
    the Newton–Schulz iteration in float64."""

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                buffer = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p.grad))
                buffer.lerp_(p.grad, 1 - group["momentum"])
                update = p.grad.lerp(buffer, group["momentum"]) if group["nesterov"] else buffer
                update = orthogonalised_float64(update, group["ns_coefficients"], group["ns_steps"], group["eps"])
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(update.to(p.dtype), alpha=-_adjust_lr(group["lr"], group["adjust_lr_fn"], p.shape))


class OptimizerPair:
    """Optimisers over disjoint parameters, stepped, zeroed, saved and restored as one."""

    def __init__(self, *optimizers: torch.optim.Optimizer):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [group for optimizer in self.optimizers for group in optimizer.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": [optimizer.state_dict() for optimizer in self.optimizers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for optimizer, saved in zip(self.optimizers, state["optimizers"], strict=True):
            optimizer.load_state_dict(saved)


class Muon(Method):
    name = "muon"
    title = "Muon"
    description = "torch.optim.Muon on the hidden weight matrices, the trial's optimiser on the rest"
    Settings = MuonSettings

    @classmethod
    def check(cls, cfg: TrialConfig, task: Task) -> None:
        super().check(cfg, task)
        with torch.random.fork_rng(devices=[]):  # building the model to look at it draws from torch's stream
            model = task.build_model(cfg)
        if not hidden_matrices(model):
            raise ConfigError(
                "method",
                f"muon updates hidden weight matrices, and task {task.name}'s model has none "
                "(no 2-D weight besides its input embedding and output layer)",
            )

    def make_optimizer(self, model: nn.Module, trials_own: OptimizerFactory) -> torch.optim.Optimizer:
        hidden = hidden_matrices(model)
        chosen = {id(p) for p in hidden}
        s = self.settings
        kind = Float64Muon if s.muon_ns_precision == "float64" else torch.optim.Muon
        muon = kind(
            hidden,
            lr=s.muon_lr,
            weight_decay=self.cfg.weight_decay,
            momentum=s.muon_momentum,
            nesterov=s.muon_nesterov,
            ns_steps=s.muon_ns_steps,
            adjust_lr_fn=s.muon_adjust_lr_fn,
        )
        rest = [p for p in model.parameters() if id(p) not in chosen]
        return OptimizerPair(muon, trials_own(rest)) if rest else OptimizerPair(muon)  # polynomial: only a matrix
