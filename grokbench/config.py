"""The typed trial configuration, validated once at the boundary.

A `TrialConfig` names one trial: task, method, strength, initialisation scale, seed and the training settings.
Fields left as `None` take the task's default (and, for `lam`, the method's); `resolve()` fills them in and
checks every value, raising `ConfigError` with the field name and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, fields
from typing import Any, Mapping


class ConfigError(ValueError):
    """A configuration value a user gave is wrong; the message names the field and what is allowed."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


DTYPES = ("float64", "float32")
DEVICES = ("auto", "cpu", "cuda")
OPTIMIZERS = ("adamw", "sgd")
LOSSES = ("ce", "mse")
GROKALIGN_ESTIMATORS = ("projection", "exact", "hutchinson", "hutchinson_shared")
GROKFAST_VARIANTS = ("ema", "ma")


@dataclass(frozen=True)
class TrialConfig:
    task: str = "mnist"
    method: str = "baseline"
    loss: str | None = None
    lam: float | None = None  # the method's strength; each method says what it scales
    init_scale: float | None = None
    seed: int = 0
    lr: float | None = None
    optimizer: str | None = None
    weight_decay: float | None = None
    batch_size: int | None = None
    max_epochs: int | None = None
    eval_every: int | None = None  # in epochs
    epochs_after_grok: int = 0  # keep training this many epochs past grokking (0: stop at grokking)
    device: str = "auto"
    dtype: str | None = None
    threads: int | None = None  # torch intra-op threads; None keeps torch's default
    data_dir: str | None = None
    probe_size: int = 256  # training points the geometry metrics are computed on
    noise_std: float | None = None  # robustness probe: Gaussian input noise (normalised input space)
    grokalign_estimator: str = "projection"
    grokalign_projections: int = 1
    grokfast_variant: str = "ema"
    grokfast_alpha: float = 0.8
    grokfast_window: int = 100

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrialConfig:
        """Build a config from user input (CLI strings, YAML, JSON), coercing and naming any bad field."""
        hints = typing.get_type_hints(cls)
        known = {f.name for f in fields(cls)}
        kwargs = {}
        for name, value in values.items():
            if name not in known:
                raise ConfigError(name, f"unknown field; allowed fields: {', '.join(sorted(known))}")
            kwargs[name] = _coerce(name, value, hints[name])
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrialConfig:
        return dataclasses.replace(self, **changes)


def _coerce(name: str, value: Any, hint: Any) -> Any:
    optional = isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)
    base = next(t for t in typing.get_args(hint) if t is not type(None)) if optional else hint
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null", "")):
        if optional:
            return None
        raise ConfigError(name, f"must be a {base.__name__}, not empty")
    if base is bool:
        raise AssertionError("no boolean fields")  # pragma: no cover
    if base is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ConfigError(name, f"must be an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(name, f"must be an integer, got {value!r}") from None
    if base is float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(name, f"must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(name, f"must be a finite number, got {value!r}")
        return number
    if not isinstance(value, str):
        raise ConfigError(name, f"must be a string, got {value!r}")
    return value


def _one_of(name: str, value: Any, allowed: typing.Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ConfigError(name, f"{value!r} is not one of: {', '.join(allowed)}")


def _positive(name: str, value: float | int) -> None:
    if not value > 0:
        raise ConfigError(name, f"must be > 0, got {value}")


def resolve(cfg: TrialConfig) -> TrialConfig:
    """Fill every `None` from the task's and the method's defaults and validate the result."""
    from grokbench.methods import METHODS
    from grokbench.tasks import TASKS

    _one_of("task", cfg.task, TASKS)
    _one_of("method", cfg.method, METHODS)
    task, method = TASKS[cfg.task], METHODS[cfg.method]
    defaults = task.defaults
    filled = {
        f.name: getattr(defaults, f.name)
        for f in fields(defaults)
        if hasattr(cfg, f.name) and getattr(cfg, f.name) is None
    }
    cfg = cfg.replace(**filled)
    _one_of("loss", cfg.loss, task.losses)
    if cfg.lam is None:
        cfg = cfg.replace(lam=method.default_lam(cfg))
    _validate(cfg, task, method)
    return cfg


def _validate(cfg: TrialConfig, task: Any, method: Any) -> None:
    if cfg.lam is not None and cfg.lam < 0:
        raise ConfigError("lam", f"must be >= 0, got {cfg.lam}")
    method.check(cfg)
    if cfg.init_scale == 0 or cfg.init_scale < 0:
        raise ConfigError("init_scale", f"must be > 0, got {cfg.init_scale}")
    _positive("lr", cfg.lr)
    _one_of("optimizer", cfg.optimizer, OPTIMIZERS)
    if cfg.weight_decay < 0:
        raise ConfigError("weight_decay", f"must be >= 0, got {cfg.weight_decay}")
    _positive("batch_size", cfg.batch_size)
    if cfg.batch_size > task.train_size:
        raise ConfigError(
            "batch_size", f"{cfg.batch_size} is larger than the {task.train_size} training points of {cfg.task}"
        )
    _positive("max_epochs", cfg.max_epochs)
    _positive("eval_every", cfg.eval_every)
    if cfg.epochs_after_grok < 0:
        raise ConfigError("epochs_after_grok", f"must be >= 0, got {cfg.epochs_after_grok}")
    _one_of("device", cfg.device, DEVICES)
    _one_of("dtype", cfg.dtype, DTYPES)
    if cfg.threads is not None:
        _positive("threads", cfg.threads)
    _positive("probe_size", cfg.probe_size)
    if cfg.noise_std < 0:
        raise ConfigError("noise_std", f"must be >= 0, got {cfg.noise_std}")
    _one_of("grokalign_estimator", cfg.grokalign_estimator, GROKALIGN_ESTIMATORS)
    _positive("grokalign_projections", cfg.grokalign_projections)
    _one_of("grokfast_variant", cfg.grokfast_variant, GROKFAST_VARIANTS)
    if not 0 <= cfg.grokfast_alpha < 1:
        raise ConfigError("grokfast_alpha", f"must be in [0, 1), got {cfg.grokfast_alpha}")
    _positive("grokfast_window", cfg.grokfast_window)
