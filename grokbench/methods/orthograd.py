"""⊥Grad (Prieto et al. 2025, "Grokking at the edge of numerical stability"): before the trial's own optimiser
steps, each parameter tensor's gradient g becomes its component orthogonal to the weights w,
g⊥ = g − (w·g)/(w·w)·w, rescaled to ‖g‖, as the authors' `OrthoGrad` wrapper does (its 1e-30 guards included).

The step that follows is the trial's optimiser with the trial's settings: their wrapper passed AdamW neither β
nor ε, so their ⊥AdamW ran at torch's (0.9, 0.999) and 1e-8 (their issue #11); modarith's `prieto_mlp` preset
gives this method those values.
"""

from __future__ import annotations

import torch

from grokbench.methods.base import Method

GUARD = 1e-30  # the authors' guard against dividing by a zero norm


def orthogonalised(w: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """g's component orthogonal to w (both flattened), rescaled to ‖g‖."""
    w, g = w.reshape(-1), g.reshape(-1)
    orthogonal = g - (w @ g) / (w @ w + GUARD) * w
    return orthogonal * (g.norm() / (orthogonal.norm() + GUARD))


class OrthoGrad(Method):
    name = "orthograd"
    title = "⊥Grad"
    description = "⊥Grad: step only the gradient's part orthogonal to the weights (Prieto et al. 2025)"

    @torch.no_grad()
    def before_step(self, params: list[torch.Tensor]) -> None:
        for p in params:
            if p.grad is not None:
                p.grad.copy_(orthogonalised(p, p.grad).view_as(p.grad))
