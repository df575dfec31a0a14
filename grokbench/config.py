"""The typed trial configuration: plain data, naming no task and no method.

A `TrialConfig` names one trial: its task and method, the settings every trial shares (seed, loss, init scale,
optimiser, budget, placement, ...), and the task's and the method's own settings, each a dataclass owned by its
component (`task_settings`, `method_settings`). Outside the engine a config is one flat mapping of setting names
to values (CLI flags, sweep files, MLflow params): `grokbench.resolve.config_from` splits it, `to_dict` joins it
again. Reading a config against the task and method registries (splitting, filling defaults, validating) lives in
`grokbench.resolve`, so that tasks and methods can import this module without a cycle.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from grokbench.settings import NO_NEUTRAL, ConfigError, Former, Settings, former_of, neutral_of, setting

__all__ = ["ConfigError", "TrialConfig", "identity"]

DTYPES = ("float64", "float32")
DEVICES = ("auto", "cpu", "cuda")
OPTIMIZERS = ("adamw", "adam", "sgd")
BATCH_ORDERS = ("fixed", "shuffle")
ADAM_BETAS = (0.9, 0.999)  # torch's defaults: what every trial used before betas were settings
ADAM_EPS = 1e-8  # torch's default: what every trial used before ε was a setting
SOFTMAX_PRECISIONS = (16, 32, 64)
# modarith's boolean `float64_loss` became `softmax_precision`: true was 64; false was the model's dtype, float32
# in every stored trial
FLOAT64_LOSS = Former("float64_loss", {64: True, 32: False})

BUDGET = ("max_epochs", "epochs_after_grok")  # how long a trial runs, not what it computes on the way
PLACEMENT = ("device", "threads", "data_dir")  # where and how fast it runs
NOT_IDENTITY = ("preset", *BUDGET, *PLACEMENT)  # a preset acts only through the settings it sets


@dataclass(frozen=True)
class TrialConfig:
    task: str = setting("mnist", "the task")
    method: str = setting(
        "baseline", "baseline | grokalign | grokfast | adversarial | orthograd | muon | norm_constraint"
    )
    preset: str | None = setting(None, "a named set of the task's settings; flags given beside it win")
    seed: int = setting(0, "initialisation, data order and the method's random draws")
    loss: str | None = setting(
        None, "ce | mse | stablemax (Prieto et al.'s, in float64; a class distribution only) (task default)"
    )
    softmax_precision: int | None = setting(
        None,
        "16 | 32 | 64: the bits the softmax cross-entropy (ce) is computed in (task default; none: the model's dtype)",
        neutral=None,
        former=FLOAT64_LOSS,
    )
    lam: float | None = setting(
        None,
        "the method's strength: grokalign penalty weight, grokfast λ_gf, adversarial σ multiplier (method default)",
    )
    init_scale: float | None = setting(None, "multiply the initial weights by this (task default)")
    optimizer: str | None = setting(None, "adamw | adam (L2 weight decay) | sgd (task default)")
    lr: float | None = setting(None, "learning rate (task default)")
    weight_decay: float | None = setting(None, "weight decay (task default)")
    beta1: float | None = setting(None, "Adam's β₁ (task default; torch's 0.9)", neutral=ADAM_BETAS[0])
    beta2: float | None = setting(None, "Adam's β₂ (task default; torch's 0.999)", neutral=ADAM_BETAS[1])
    adam_eps: float | None = setting(None, "Adam's ε (task default; torch's 1e-8)", neutral=ADAM_EPS)
    warmup_steps: int | None = setting(
        None,
        "linear learning-rate warm-up over this many updates: lr·min(t/W, 1) at update t (task default; 0: none)",
        neutral=0,
    )
    batch_size: int | None = setting(None, "points per update (task default)")
    batch_order: str | None = setting(
        None, "fixed | shuffle (reshuffled each epoch from the seed; task default)", neutral="fixed"
    )
    max_epochs: int | None = setting(None, "epoch budget; a run that has not grokked by then is censored")
    eval_every: int | None = setting(None, "evaluate every this many epochs (task default)")
    epochs_after_grok: int = setting(0, "keep training this many epochs after grokking (0: stop at grokking)")
    device: str = setting("auto", "auto | cpu | cuda")
    dtype: str | None = setting(None, "float64 | float32 (task default)")
    threads: int | None = setting(None, "torch threads (default: torch's choice)")
    data_dir: str | None = setting(
        None, "directory holding the task's data, e.g. MNIST/raw/ (default $GROKBENCH_DATA, else a per-user cache)"
    )
    probe_size: int = setting(256, "training points the geometry metrics are computed on")
    task_settings: Any = None  # the task's Settings instance (its defaults when None)
    method_settings: Any = None  # the method's Settings instance (its defaults when None)
    # the settings a user gave (flags, a sweep's or suite's values), not filled in by a preset or a default:
    # a method may treat a default differently from a choice (norm_constraint's weight decay)
    given: frozenset[str] = dataclasses.field(default=frozenset(), compare=False)  # not what the trial computes

    def to_dict(self) -> dict[str, Any]:
        """The flat view: shared settings, then the task's, then the method's."""
        shared = {name: getattr(self, name) for name in SHARED}
        return {**shared, **_as_dict(self.task_settings), **_as_dict(self.method_settings)}

    def replace(self, **changes: Any) -> TrialConfig:
        return dataclasses.replace(self, **changes)


SHARED = tuple(f.name for f in fields(TrialConfig) if f.name not in ("task_settings", "method_settings", "given"))


def _as_dict(settings: Settings | None) -> dict[str, Any]:
    return {} if settings is None else settings.as_dict()


def identity(cfg: TrialConfig) -> dict[str, Any]:
    """What makes two resolved trials the same computation: every setting that changes a logged number, without
    the budget and the placement, and without settings at their neutral value (added later; at that value they
    reproduce what trials did before they existed), so stored trials keep their identity as settings are added;
    a setting that replaced a former one appears under the former's name and value where the former could say it."""
    out: dict[str, Any] = {"task": cfg.task, "method": cfg.method}
    components = [(cfg, [f for f in fields(TrialConfig) if f.name in SHARED])]
    components += [(s, fields(s)) for s in (cfg.task_settings, cfg.method_settings)]
    for owner, owned in components:
        for f in owned:
            value = getattr(owner, f.name)
            neutral = neutral_of(f)
            if f.name in NOT_IDENTITY or f.name in out or (neutral is not NO_NEUTRAL and value == neutral):
                continue
            former = former_of(f)
            if former is not None and value in former.values:
                out[former.name] = former.values[value]
            else:
                out[f.name] = value
    return out
