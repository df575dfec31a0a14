"""Weight decay alone: the task's optimiser and weight decay, nothing added."""

from grokbench.config import ConfigError, TrialConfig
from grokbench.methods.base import Method
from grokbench.tasks import Task


class Baseline(Method):
    name = "baseline"
    title = "Baseline"
    description = "the task's optimiser and weight decay, nothing added"

    @classmethod
    def check(cls, cfg: TrialConfig, task: Task) -> None:
        super().check(cfg, task)
        if cfg.lam:
            raise ConfigError("lam", "baseline has no strength to set; change its weight decay with --weight-decay")
