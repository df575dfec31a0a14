"""Weight decay alone: the task's optimiser and weight decay, nothing added."""

from grokbench.config import ConfigError, TrialConfig
from grokbench.methods.base import Method


class Baseline(Method):
    name = "baseline"

    @classmethod
    def check(cls, cfg: TrialConfig) -> None:
        if cfg.lam:
            raise ConfigError("lam", "baseline has no strength to set; change its weight decay with --weight-decay")
