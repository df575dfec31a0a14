"""Input-output Jacobians of a network, J_f(x) ∈ R^{C×D} per point, and estimators of ‖J_f(x)‖²_F.

Every function assumes the network treats the points of a batch independently (no batch statistics), so the
gradient of a per-point weighted sum of outputs with respect to the batch gives each point's vector-Jacobian
product. Each estimator runs the forward pass itself and returns its output, so training reuses that forward
pass for the loss instead of running a second one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.autograd import forward_ad

# a module, or the part of one above its input embedding (`methods.base.input_space`)
Network = Callable[[torch.Tensor], torch.Tensor]
# (f, x, generator) -> (output f(x) of shape (B, C), estimate of ‖J_f(x)‖²_F of shape (B,))
Estimator = Callable[[Network, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def _with_input_grad(x: torch.Tensor) -> torch.Tensor:
    """x as a tensor the outputs can be differentiated by; an x already in the graph (an input embedding of
    trained weights) stays there, so that the loss and the penalty also train what produced it."""
    return x if x.requires_grad else x.detach().requires_grad_(True)


def jacobian(out: torch.Tensor, x: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """Exact per-point Jacobians, shape (B, C, D): one vector-Jacobian product per output row."""
    eye = torch.eye(out.shape[1], dtype=out.dtype, device=out.device)
    rows = [
        torch.autograd.grad(out, x, eye[k].expand_as(out), create_graph=create_graph, retain_graph=True)[0]
        for k in range(out.shape[1])
    ]
    return torch.stack(rows, dim=1)


def centroid(out: torch.Tensor, x: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """c(x) = J_f(x)ᵀ·1 = ∇ₓ Σ_k f_k(x): the sum of the Jacobian rows, as one vector-Jacobian product."""
    return torch.autograd.grad(out.sum(), x, create_graph=create_graph, retain_graph=True)[0]


def exact(model: Network, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """‖J‖²_F from all C rows (C backward passes): the reference the estimators are tested against."""
    x = _with_input_grad(x)
    out = model(x)
    return out, jacobian(out, x, create_graph=True).square().sum(dim=(1, 2))


def output_projection(n_proj: int) -> Estimator:
    """The GrokAlign authors' estimator (Hoffman et al. 2019): n_proj unit vectors v in output space per point,
    ‖J‖²_F ≈ (C / n_proj)·Σ‖vᵀJ‖², each vᵀJ one backward pass kept differentiable (create_graph)."""

    def estimate(model: Network, x: torch.Tensor, generator: torch.Generator):
        x = _with_input_grad(x)
        out = model(x)
        v = torch.randn((n_proj, *out.shape), generator=generator, device=out.device, dtype=out.dtype)
        v = v / v.norm(dim=-1, keepdim=True)
        if n_proj == 1:
            vjp = torch.autograd.grad(out, x, v[0], create_graph=True)[0].unsqueeze(0)
        else:
            vjp = torch.autograd.grad(out, x, v, create_graph=True, is_grads_batched=True)[0]
        return out, vjp.square().sum(dim=(0, 2)) * (out.shape[1] / n_proj)

    return estimate


def input_hutchinson(shared: bool) -> Estimator:
    """Hutchinson's estimator in input space, E‖J v‖² = ‖J‖²_F for v ~ N(0, I), with J v carried as a tangent
    alongside the forward pass (forward-mode AD). `shared`: one v for the whole batch (cheapest, noisiest)."""

    def estimate(model: Network, x: torch.Tensor, generator: torch.Generator):
        shape = (1, x.shape[1]) if shared else x.shape
        v = torch.randn(shape, generator=generator, device=x.device, dtype=torch.float32).to(x.dtype)
        with forward_ad.dual_level():
            dual_out = model(forward_ad.make_dual(x, v.expand_as(x)))
            out, jv = forward_ad.unpack_dual(dual_out)
        return out, jv.square().sum(dim=1)

    return estimate


def estimator(name: str, n_proj: int = 1) -> Estimator:
    return {
        "projection": output_projection(n_proj),
        "exact": exact,
        "hutchinson": input_hutchinson(shared=False),
        "hutchinson_shared": input_hutchinson(shared=True),
    }[name]
