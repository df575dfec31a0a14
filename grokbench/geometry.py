"""Geometry metrics of the GrokAlign paper, computed on a fixed probe set of training points.

All values are means over the probe points and are returned as 0-dim device tensors, so the caller can read
them together with the other evaluation metrics in one host-device transfer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from grokbench.jacobian import centroid, jacobian


def first_pc_explained_variance(jac: torch.Tensor) -> torch.Tensor:
    """Per point, the share of variance of the centred Jacobian rows carried by their first principal
    component (1 = rank one). A single-output Jacobian is rank one by construction."""
    if jac.shape[1] < 2:
        return torch.ones(jac.shape[0], dtype=jac.dtype, device=jac.device)
    centred = jac - jac.mean(dim=1, keepdim=True)
    # eigenvalues of the small C×C Gram matrix are the squared singular values, ~8× cheaper than an SVD of C×D
    eig = torch.linalg.eigvalsh(centred @ centred.transpose(1, 2)).clamp_min(0)
    return eig[:, -1] / eig.sum(dim=1).clamp_min(torch.finfo(jac.dtype).tiny)


def geometry(model: nn.Module, probe: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.enable_grad():
        x = probe.detach().requires_grad_(True)
        out = model(x)
        jac = jacobian(out, x)  # (B, C, D)
        cen = centroid(out, x)  # (B, D)
    x = x.detach()
    row_alignment = F.cosine_similarity(jac, x.unsqueeze(1), dim=2)  # (B, C)
    return {
        "jacobian_norm": jac.flatten(1).norm(dim=1).mean(),
        "centroid_norm": cen.norm(dim=1).mean(),
        "centroid_alignment": F.cosine_similarity(cen, x, dim=1).mean(),
        "centroid_inner_product": (cen * x).sum(dim=1).mean(),
        "row_alignment_max": row_alignment.amax(dim=1).mean(),
        "row_alignment_min": row_alignment.amin(dim=1).mean(),
        "pc1_explained_variance": first_pc_explained_variance(jac).mean(),
    }
