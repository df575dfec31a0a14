"""Training losses and accuracy on raw network outputs f (logits, not softmax).

Targets are class indices (C outputs) or ±1 scalars (one output, predicted class sign f).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y)


def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean over batch × outputs of the squared error against one-hot (or ±1 scalar) targets."""
    if y.is_floating_point():
        return F.mse_loss(out.squeeze(1), y)
    return F.mse_loss(out, F.one_hot(y, out.shape[1]).to(out.dtype))


LOSSES: dict[str, LossFn] = {"ce": cross_entropy, "mse": mse}


def correct(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-point correctness as a boolean tensor (kept on the device: no host sync)."""
    if y.is_floating_point():
        return torch.sign(out.squeeze(1)) == y
    return out.argmax(dim=1) == y


def accuracy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return correct(out, y).to(out.dtype).mean()
