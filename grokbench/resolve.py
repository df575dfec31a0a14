"""Reading a trial configuration against the task and method registries.

`config_from` turns one flat mapping of settings (CLI flags, a sweep file's trial, MLflow params) into a
`TrialConfig`, handing each setting to its owner: shared, the task's or the method's. `resolve` fills every
setting left as `None` from the task's defaults (and `lam` from the method's) and checks every value, raising
`ConfigError` with the setting's name and what is allowed. Both need `TASKS` and `METHODS`, whose modules import
`grokbench.config`; kept here, the imports run one way: resolve imports tasks and methods, which import config.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any

from grokbench.config import (
    ADAM_BETAS,
    ADAM_EPS,
    BATCH_ORDERS,
    DEVICES,
    DTYPES,
    OPTIMIZERS,
    SHARED,
    SOFTMAX_PRECISIONS,
    ConfigError,
    TrialConfig,
)
from grokbench.losses import CLASS_LOSSES
from grokbench.methods import METHODS
from grokbench.settings import at_most, coerce, former_of, non_negative, one_of, positive
from grokbench.tasks import TASKS, Task

__all__ = ["config_from", "config_of", "foreign_setting", "resolve", "stored_config"]


def config_from(values: Mapping[str, Any], stored: bool = False) -> TrialConfig:
    """A config from flat user input (CLI strings, YAML, JSON), coercing and naming any bad setting.

    A preset's values come first; values given beside it win. `stored`: a config written by any version of
    grokbench (MLflow params, config.json, a checkpoint), whose settings of other components are ignored. A
    setting given under the name of the one it replaced is read as the newer one."""
    task, method = _component("task", values), _component("method", values)
    values = _renamed(values, task)
    given = frozenset() if stored else frozenset(name for name, value in values.items() if value is not None)
    preset = values.get("preset")
    if preset not in (None, "None") and not stored:  # a stored config already holds what its preset set
        if not task.presets:
            raise ConfigError("preset", f"task {task.name} has no presets")
        one_of("preset", preset, task.presets)
        values = {**task.preset_values(preset, values), **values}
    hints = typing.get_type_hints(TrialConfig)
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
    return TrialConfig(
        **shared,
        task_settings=task.Settings.build(own),
        method_settings=method.Settings.build(method_values),
        given=given,
    )


def _renamed(values: Mapping[str, Any], task: Task) -> dict[str, Any]:
    """`values` with a former setting's name and value put as the newer setting's (the newer one, if also given
    a value, wins)."""
    out = dict(values)
    for f in [*dataclasses.fields(TrialConfig), *dataclasses.fields(task.Settings)]:
        former = former_of(f)
        if former is not None and former.name in out:
            old = out.pop(former.name)
            if out.get(f.name) in (None, "None"):
                out[f.name] = former.newer(old)
    return out


def config_of(**values: Any) -> TrialConfig:
    """`config_from` with the settings as keywords."""
    return config_from(values)


def _component(kind: str, values: dict[str, Any]) -> Any:
    registry = TASKS if kind == "task" else METHODS
    name = values.get(kind, "mnist" if kind == "task" else "baseline")
    one_of(kind, name, registry)
    return registry[name]


def foreign_setting(name: str, task: str, method: str) -> ConfigError:
    """The error for a setting this trial's task and method do not have, naming whose setting it is."""
    for other in METHODS.values():
        if name in other.Settings.names():
            return ConfigError(
                name,
                f"a setting of method {other.name}; it needs --method {other.name} (this trial's method is {method})",
            )
    for other in TASKS.values():
        if name in other.Settings.names():
            return ConfigError(name, f"a setting of task {other.name}, not of {task}")
    method_names = METHODS[method].Settings.names() if method in METHODS else ()  # an unknown one is refused later
    allowed = sorted({*SHARED, *TASKS[task].Settings.names(), *method_names} - {"task"})
    return ConfigError(name, f"unknown setting; {task} with method {method} takes: {', '.join(allowed)}")


def resolve(cfg: TrialConfig) -> TrialConfig:
    """Fill every `None` from the task's and the method's defaults and validate the result."""
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
        adam = dict(zip(("beta1", "beta2", "adam_eps"), (*ADAM_BETAS, ADAM_EPS), strict=True))
        filled.update({name: value for name, value in adam.items() if name in filled})
    cfg = cfg.replace(**filled, task_settings=own, method_settings=method_settings)
    _check_loss(cfg, task)
    if cfg.lam is None:
        cfg = cfg.replace(lam=method.default_lam(cfg))
    cfg = method.adjusted(cfg, task)
    _validate(cfg, task)
    method.check(cfg, task)
    return cfg


def _check_loss(cfg: TrialConfig, task: Task) -> None:
    if cfg.loss in CLASS_LOSSES and cfg.loss not in task.losses:
        raise ConfigError(
            "loss",
            f"{cfg.loss!r} is not one of: {', '.join(task.losses)} ({cfg.loss} needs a class distribution, and "
            f"task {task.name}'s model has a scalar output)",
        )
    one_of("loss", cfg.loss, task.losses)


def _validate(cfg: TrialConfig, task: Task) -> None:
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
    positive("adam_eps", cfg.adam_eps)
    if cfg.optimizer == "sgd" and cfg.adam_eps != ADAM_EPS:
        raise ConfigError("adam_eps", "applies to adam and adamw; sgd has none")
    if cfg.softmax_precision is not None:
        one_of("softmax_precision", str(cfg.softmax_precision), map(str, SOFTMAX_PRECISIONS))
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


def stored_config(values: Mapping[str, Any]) -> TrialConfig:
    """The resolved config of a trial stored by any version of grokbench (its flat settings)."""
    return resolve(config_from(values, stored=True))
