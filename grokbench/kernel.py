"""Neural-tangent-kernel diagnostics (NTK): how far a network's kernel moved from its
initial one, how well it aligns with the target, and what kernel regression with the initial kernel predicts.

The Gram matrices come from the caller (for the polynomial task, a closed form); all values are 0-dim tensors.
"""

from __future__ import annotations

import torch

RIDGE = 1e-10  # relative to the mean diagonal of the kernel: only to keep the solve stable, far below any fit


def ntk_distance(k0: torch.Tensor, kt: torch.Tensor) -> torch.Tensor:
    """1 − ⟨K₀,K_t⟩_F / (‖K₀‖_F ‖K_t‖_F): 0 while the kernel keeps its shape (lazy), up to 1 as it turns."""
    return 1 - (k0 * kt).sum() / (k0.norm() * kt.norm())


def kernel_alignment(k: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Kernel-target alignment on centred quantities, as Kumar et al. compute it: y_cᵀ K_c y_c / (‖K_c‖_F ‖y_c‖²),
    y_c = y − mean(y), K_c = K minus its column means."""
    y_c = y - y.mean()
    k_c = k - k.mean(dim=0, keepdim=True)
    return y_c @ k_c @ y_c / (k_c.norm() * y_c.dot(y_c))


def kernel_regression_test_loss(
    k_train: torch.Tensor, k_test_train: torch.Tensor, y_train: torch.Tensor, y_test: torch.Tensor
) -> torch.Tensor:
    """Test MSE of kernel regression: solve (K + r·I) a = y on the training set (r a tiny ridge, RIDGE × the mean
    diagonal, for stability) and predict K_test,train · a."""
    ridge = RIDGE * k_train.diagonal().mean()
    eye = torch.eye(len(k_train), dtype=k_train.dtype, device=k_train.device)
    a = torch.linalg.solve(k_train + ridge * eye, y_train)
    return (k_test_train @ a - y_test).square().mean()
