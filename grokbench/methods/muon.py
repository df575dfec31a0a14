"""Muon (Jordan et al. 2024; for grokking, Tveit et al. 2025) as `torch.optim.Muon` on the hidden weight matrices.

Muon steps every 2-D weight but the input embedding and the output layer; a dense first layer counts as hidden.
The trial's own optimiser, with its lr and weight decay, steps the rest: embeddings, the output layer, biases and
norms. Under AdamW this is the split the Muon authors and Keller Jordan's reference use. Muon's weight decay is
the trial's `weight_decay` (not torch's default of 0.1), and its learning rate is its own (`muon_lr`: Muon's
scale, not AdamW's). A model's parameters are sorted by name and shape: those of an `nn.Embedding` or named
`…embedding` are embeddings, and the last 2-D parameter registered is the output layer unless the model names
another (`output_layer`).

torch computes the Newton–Schulz iteration in bfloat16: bfloat16 operands and results, the sums typically in float32.
On a CPU, grokbench's `CpuBfloat16Muon` does that arithmetic with float32 products whose operands and results are
rounded to bfloat16: on a CPU without native bfloat16 (AVX2 only) torch's own iteration made a Muon update cost
33.7× a baseline one on MNIST, against 2.66× with this one (docs/performance.md), a fact about the CPU, not the
method. `muon_ns_precision: float64` runs the same update with the iteration in
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


def orthogonalised_bfloat16(update: torch.Tensor, coefficients: tuple[float, float, float], steps: int, eps: float):
    """torch's quintic Newton–Schulz iteration step for step, each product and sum done in float32 on operands
    held in bfloat16 and rounded to bfloat16 once: a bfloat16 matrix product with float32 accumulation."""
    a, b, c = coefficients
    x = update.bfloat16()
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    x = x.div(x.norm().clamp(min=eps))
    for _ in range(steps):
        wide = x.float()
        gram = (wide @ wide.T).bfloat16().float()
        polynomial = torch.addmm(gram, gram, gram, beta=b, alpha=c).bfloat16().float()
        x = torch.addmm(wide, polynomial, wide, beta=a).bfloat16()
    return x.T if tall else x


class _OwnIterationMuon(torch.optim.Muon):
    """torch.optim.Muon's update (momentum, Nesterov, decoupled weight decay, its lr adjustment and its state) with
    the Newton–Schulz iteration a subclass names (`orthogonalised`)."""

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                buffer = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p.grad))
                buffer.lerp_(p.grad, 1 - group["momentum"])
                update = p.grad.lerp(buffer, group["momentum"]) if group["nesterov"] else buffer
                update = self.orthogonalised(update, group["ns_coefficients"], group["ns_steps"], group["eps"])
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(update.to(p.dtype), alpha=-_adjust_lr(group["lr"], group["adjust_lr_fn"], p.shape))


class Float64Muon(_OwnIterationMuon):
    """torch.optim.Muon with the Newton–Schulz iteration in float64."""

    orthogonalised = staticmethod(orthogonalised_float64)


class CpuBfloat16Muon(_OwnIterationMuon):
    """torch.optim.Muon's bfloat16 iteration, on a CPU at float32's speed."""

    orthogonalised = staticmethod(orthogonalised_bfloat16)


def muon_kind(precision: str, device: torch.device) -> type[torch.optim.Muon]:
    """The optimizer that runs the iteration at `precision` on `device`."""
    if precision == "float64":
        return Float64Muon
    return CpuBfloat16Muon if device.type == "cpu" else torch.optim.Muon


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
        muon = muon_kind(s.muon_ns_precision, hidden[0].device)(
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
