"""Grokfast (Lee et al. 2024): amplify the slow component of the gradient, g ← g + λ·μ.

`ema`: μ ← α·μ + (1−α)·g, with μ starting at the first g. `ma`: μ is the mean of the last w gradients, applied
once w have been seen (the Grokfast paper's warm-up).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from grokbench.config import ConfigError, TrialConfig
from grokbench.methods.base import Method
from grokbench.settings import Settings, one_of, positive, setting

VARIANTS = ("ema", "ma")


@dataclass(frozen=True)
class GrokfastSettings(Settings):
    grokfast_variant: str = setting("ema", "ema (exponential moving average) | ma (moving average of a window)")
    grokfast_alpha: float = setting(0.8, "EMA decay α (ema)")
    grokfast_window: int = setting(100, "window w in gradients (ma)")

    def check(self) -> None:
        one_of("grokfast_variant", self.grokfast_variant, VARIANTS)
        if not 0 <= self.grokfast_alpha < 1:
            raise ConfigError("grokfast_alpha", f"must be in [0, 1), got {self.grokfast_alpha}")
        positive("grokfast_window", self.grokfast_window)


class Grokfast(Method):
    name = "grokfast"
    title = "Grokfast"
    description = "amplify the gradient's slow component (Lee et al. 2024)"
    Settings = GrokfastSettings

    def __init__(self, cfg: TrialConfig, generator: torch.Generator):
        super().__init__(cfg, generator)
        self.slow: list[torch.Tensor] = []  # ema: μ per parameter; ma: running sum of the window
        self.window: list[torch.Tensor] = []  # ma: ring buffer of the last w gradients, (w, *shape) per parameter
        self.seen = 0

    @classmethod
    def default_lam(cls, cfg: TrialConfig) -> float:
        return 0.1 if cfg.method_settings.grokfast_variant == "ema" else 5.0

    def on_gradients(self, grads: list[torch.Tensor]) -> None:
        if self.settings.grokfast_variant == "ema":
            self._ema(grads)
        else:
            self._moving_average(grads)
        self.seen += 1

    def _ema(self, grads: list[torch.Tensor]) -> None:
        if not self.slow:
            self.slow = [g.clone() for g in grads]
        else:
            torch._foreach_lerp_(self.slow, grads, 1.0 - self.settings.grokfast_alpha)
        torch._foreach_add_(grads, self.slow, alpha=self.lam)

    def _moving_average(self, grads: list[torch.Tensor]) -> None:
        size = self.settings.grokfast_window
        if not self.window:
            self.window = [g.new_zeros((size, *g.shape)) for g in grads]
            self.slow = [torch.zeros_like(g) for g in grads]
        slot = self.seen % size
        oldest = [w[slot] for w in self.window]
        torch._foreach_sub_(self.slow, oldest)
        torch._foreach_add_(self.slow, grads)
        torch._foreach_copy_(oldest, grads)
        if self.seen + 1 >= size:
            torch._foreach_add_(grads, self.slow, alpha=self.lam / size)

    def state_dict(self) -> dict[str, Any]:
        return {"slow": self.slow, "window": self.window, "seen": self.seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.slow, self.window, self.seen = state["slow"], state["window"], state["seen"]
