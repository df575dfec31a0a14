"""Training losses and accuracy on raw network outputs f (logits, not softmax).

Targets are class indices (C outputs) or ±1 scalars (one output, predicted class sign f). The softmax
cross-entropy may be computed in a precision of its own (`softmax_precision`): in float32 the correct-class loss
of a memorised point rounds to exactly 0 ("softmax collapse", Prieto et al. 2025), which StableMax avoids.
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


def stablemax_s(x: torch.Tensor) -> torch.Tensor:
    """Prieto et al.'s s(x): x + 1 for x ≥ 0, 1/(1 − x) for x < 0 (each branch finite on the other's side, so
    neither poisons the gradient)."""
    return torch.where(x >= 0, x + 1, 1 / (1 - x.clamp(max=0)))


def stablemax_cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """−log p_y with p_i = s(x_i) / Σ_j s(x_j), in float64 (the authors' `stablemax_cross_entropy`)."""
    s = stablemax_s(out.to(torch.float64))
    return (s.sum(dim=1).log() - s.gather(1, y.unsqueeze(1)).squeeze(1).log()).mean()


LOSSES: dict[str, LossFn] = {"ce": cross_entropy, "mse": mse, "stablemax": stablemax_cross_entropy}
CLASS_LOSSES = ("ce", "stablemax")  # losses of a class distribution: a task with a scalar output has none
PRECISIONS = {16: torch.float16, 32: torch.float32, 64: torch.float64}


def cross_entropy_in(bits: int) -> LossFn:
    """The softmax cross-entropy computed in `bits`-bit floats (the logits cast first)."""
    dtype = PRECISIONS[bits]

    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out.to(dtype), y)

    loss.__name__ = f"cross_entropy_{bits}"
    return loss


def loss_for(name: str, softmax_precision: int | None) -> LossFn:
    """The loss `name`; the cross-entropy in its own precision when one is set (None: the outputs' dtype)."""
    if name == "ce" and softmax_precision is not None:
        return cross_entropy_in(softmax_precision)
    return LOSSES[name]


def zero_loss_fraction(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The share of points whose float32 softmax cross-entropy is exactly 0: the points softmax collapse has
    stopped learning from."""
    losses = F.cross_entropy(out.to(torch.float32), y, reduction="none")
    return (losses == 0).to(out.dtype).mean()


def correct(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-point correctness as a boolean tensor (kept on the device: no host sync)."""
    if y.is_floating_point():
        return torch.sign(out.squeeze(1)) == y
    return out.argmax(dim=1) == y


def accuracy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return correct(out, y).to(out.dtype).mean()
