"""The typed trial configuration, validated once at the boundary.

A `TrialConfig` names one trial: its task and method, the settings every trial shares (seed, loss, init scale,
optimiser, budget, placement, ...), and the task's and the method's own settings, each a dataclass owned by its
component (`task_settings`, `method_settings`). Outside the engine a config is one flat mapping of setting names
to values (CLI flags, sweep files, MLflow params): `from_dict` splits it, `to_dict` joins it again.
Shared settings left as `None` take the task's default (and `lam` the method's); `resolve()` fills them in and
checks every value, raising `ConfigError` with the setting's name and what is allowed.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from grokbench.settings import (
    NO_NEUTRAL,
    ConfigError,
    Settings,
    at_most,
    coerce,
    neutral_of,
    non_negative,
    one_of,
    positive,
    setting,
)

__all__ = ["ConfigError", "TrialConfig", "resolve", "identity"]

DTYPES = ("float64", "float32")
DEVICES = ("auto", "cpu", "cuda")
OPTIMIZERS = ("adamw", "adam", "sgd")
BATCH_ORDERS = ("fixed", "shuffle")
ADAM_BETAS = (0.9, 0.999)  # torch's defaults: what every trial used before betas were settings

BUDGET = ("max_epochs", "epochs_after_grok")  # how long a trial runs, not what it computes on the way
PLACEMENT = ("device", "threads", "data_dir")  # where and how fast it runs
NOT_IDENTITY = ("preset", *BUDGET, *PLACEMENT)  # a preset acts only through the settings it sets


@dataclass(frozen=True)
class TrialConfig:
    task: str = setting("mnist", "the task")
    method: str = setting("baseline", "baseline | grokalign | grokfast | adversarial")
    preset: str | None = setting(None, "a named set of the task's settings; flags given beside it win")
    seed: int = setting(0, "initialisation, data order and the method's random draws")
    loss: str | None = setting(None, "ce | mse (task default)")
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

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], stored: bool = False) -> TrialConfig:
        """A config from flat user input (CLI strings, YAML, JSON), coercing and naming any bad setting.

        A preset's values come first; values given beside it win. `stored`: a config written by any version of
        grokbench (MLflow params, config.json, a checkpoint), whose settings of other components are ignored."""
        values = dict(values)
        task, method = _component("task", values), _component("method", values)
        preset = values.get("preset")
        if preset not in (None, "None") and not stored:  # a stored config already holds what its preset set
            if not task.presets:
                raise ConfigError("preset", f"task {task.name} has no presets")
            one_of("preset", preset, task.presets)
            values = {**task.presets[preset], **values}
        hints = typing.get_type_hints(cls)
        shared, own, method_values = {}, {}, {}
        for name, value in values.items():
            if name in SHARED:
                shared[name] = coerce(name, value, hints[name])
            elif name in task.Settings.names():
                own[name] = value
            elif name in method.Settings.names():
                method_values[name] = value
            elif not stored:
                raise foreign_setting(name, task.name, method.name)
        return cls(
            **shared, task_settings=task.Settings.build(own), method_settings=method.Settings.build(method_values)
        )

    @classmethod
    def of(cls, **values: Any) -> TrialConfig:
        return cls.from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        """The flat view: shared settings, then the task's, then the method's."""
        shared = {name: getattr(self, name) for name in SHARED}
        return {**shared, **_as_dict(self.task_settings), **_as_dict(self.method_settings)}

    def replace(self, **changes: Any) -> TrialConfig:
        return dataclasses.replace(self, **changes)


SHARED = tuple(f.name for f in fields(TrialConfig) if f.name not in ("task_settings", "method_settings"))


def _as_dict(settings: Settings | None) -> dict[str, Any]:
    return {} if settings is None else settings.as_dict()


def _component(kind: str, values: dict[str, Any]) -> Any:
    from grokbench.methods import METHODS
    from grokbench.tasks import TASKS

    registry = TASKS if kind == "task" else METHODS
    name = values.get(kind, "mnist" if kind == "task" else "baseline")
    one_of(kind, name, registry)
    return registry[name]


def foreign_setting(name: str, task: str, method: str) -> ConfigError:
    """The error for a setting this trial's task and method do not have, naming whose setting it is."""
    from grokbench.methods import METHODS
    from grokbench.tasks import TASKS

    for other in METHODS.values():
        if name in other.Settings.names():
            return ConfigError(
                name,
                f"a setting of method {other.name}; it needs --method {other.name} (this trial's method is {method})",
            )
    for other in TASKS.values():
        if name in other.Settings.names():
            return ConfigError(name, f"a setting of task {other.name}, not of {task}")
    allowed = sorted({*SHARED, *TASKS[task].Settings.names(), *METHODS[method].Settings.names()} - {"task"})
    return ConfigError(name, f"unknown setting; {task} with method {method} takes: {', '.join(allowed)}")


def resolve(cfg: TrialConfig) -> TrialConfig:
    """Fill every `None` from the task's and the method's defaults and validate the result."""
    from grokbench.methods import METHODS
    from grokbench.tasks import TASKS

    one_of("task", cfg.task, TASKS)
    one_of("method", cfg.method, METHODS)
    task, method = TASKS[cfg.task], METHODS[cfg.method]
    own = cfg.task_settings or task.Settings()
    method_settings = cfg.method_settings or method.Settings()
    own.check()
    method_settings.check()
    defaults = task.shared_defaults(own)
    filled = {name: defaults[name] for name in SHARED if getattr(cfg, name) is None and name in defaults}
    if filled.get("optimizer", cfg.optimizer) == "sgd":  # a task's Adam betas do not apply; a user's are refused
        filled.update(
            {name: value for name, value in zip(("beta1", "beta2"), ADAM_BETAS, strict=False) if name in filled}
        )
    cfg = cfg.replace(**filled, task_settings=own, method_settings=method_settings)
    one_of("loss", cfg.loss, task.losses)
    if cfg.lam is None:
        cfg = cfg.replace(lam=method.default_lam(cfg))
    _validate(cfg, task)
    method.check(cfg, task)
    return cfg


def _validate(cfg: TrialConfig, task: Any) -> None:
    non_negative("lam", cfg.lam)
    positive("init_scale", cfg.init_scale)
    one_of("optimizer", cfg.optimizer, OPTIMIZERS)
    positive("lr", cfg.lr)
    non_negative("weight_decay", cfg.weight_decay)
    for name in ("beta1", "beta2"):
        if not 0 <= getattr(cfg, name) < 1:
            raise ConfigError(name, f"must be in [0, 1), got {getattr(cfg, name)}")
    if cfg.optimizer == "sgd" and (cfg.beta1, cfg.beta2) != ADAM_BETAS:
        raise ConfigError("beta1" if cfg.beta1 != ADAM_BETAS[0] else "beta2", "applies to adam and adamw; sgd has none")
    non_negative("warmup_steps", cfg.warmup_steps)
    positive("batch_size", cfg.batch_size)
    at_most("batch_size", cfg.batch_size, task.train_size(cfg), f"the training points of {cfg.task}")
    one_of("batch_order", cfg.batch_order, BATCH_ORDERS)
    positive("max_epochs", cfg.max_epochs)
    positive("eval_every", cfg.eval_every)
    non_negative("epochs_after_grok", cfg.epochs_after_grok)
    one_of("device", cfg.device, DEVICES)
    one_of("dtype", cfg.dtype, DTYPES)
    if cfg.threads is not None:
        positive("threads", cfg.threads)
    positive("probe_size", cfg.probe_size)
    if cfg.probe_size < task.min_probe_size:
        raise ConfigError(
            "probe_size",
            f"must be at least {task.min_probe_size} on task {cfg.task} (its geometry "
            f"metrics need that many points), got {cfg.probe_size}",
        )


def identity(cfg: TrialConfig) -> dict[str, Any]:
    """What makes two resolved trials the same computation: every setting that changes a logged number, without
    the budget and the placement, and without settings at their neutral value (added later; at that value they
    reproduce what trials did before they existed), so stored trials keep their identity as settings are added."""
    out: dict[str, Any] = {"task": cfg.task, "method": cfg.method}
    components = [(cfg, [f for f in fields(TrialConfig) if f.name in SHARED])]
    components += [(s, fields(s)) for s in (cfg.task_settings, cfg.method_settings)]
    for owner, owned in components:
        for f in owned:
            value = getattr(owner, f.name)
            neutral = neutral_of(f)
            if f.name in NOT_IDENTITY or f.name in out or (neutral is not NO_NEUTRAL and value == neutral):
                continue
            out[f.name] = value
    return out


def stored_config(values: Mapping[str, Any]) -> TrialConfig:
    """The resolved config of a trial stored by any version of grokbench (its flat settings)."""
    return resolve(TrialConfig.from_dict(values, stored=True))
