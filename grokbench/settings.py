"""Typed settings: the machinery every component's settings dataclass shares.

A setting is a dataclass field made with `setting(...)`: a default, a help line (the CLI shows it), and, for a
setting added after trials were first stored, the `neutral` value that reproduces what trials did before it
existed. A trial's identity leaves out settings at their neutral value, so adding one keeps stored trials known;
a setting that took the place of an older one names it (`Former`), so stored trials keep their identity, and
stored configs their meaning, across the rename.
Values from the command line, YAML or MLflow params are coerced by the field's type, and a bad one raises
`ConfigError` naming the setting and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

NO_NEUTRAL = object()  # the setting always counts in a trial's identity


class ConfigError(ValueError):
    """A configuration value a user gave is wrong; the message names the setting and what is allowed."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


@dataclasses.dataclass(frozen=True)
class Former:
    """The setting a newer one replaced: its name, and the newer setting's values it could express, as it wrote
    them (`values`: newer value → former value)."""

    name: str
    values: dict[Any, Any]

    def newer(self, former_value: Any) -> Any:
        """The newer setting's value for a value of the former one (strings allowed, as stored params are)."""
        for value, old in self.values.items():
            if former_value == old or str(former_value).lower() == str(old).lower():
                return value
        raise ConfigError(
            self.name, f"must be one of {', '.join(map(str, self.values.values()))}, got {former_value!r}"
        )


def setting(default: Any, help: str, neutral: Any = NO_NEUTRAL, former: Former | None = None) -> Any:
    return dataclasses.field(default=default, metadata={"help": help, "neutral": neutral, "former": former})


def help_of(field: dataclasses.Field) -> str:
    return field.metadata.get("help", "")


def neutral_of(field: dataclasses.Field) -> Any:
    return field.metadata.get("neutral", NO_NEUTRAL)


def former_of(field: dataclasses.Field) -> Former | None:
    return field.metadata.get("former")


class Settings:
    """Base of a component's settings dataclass; `check()` validates the values together."""

    def check(self) -> None:
        pass

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def build(cls, values: Mapping[str, Any]) -> Any:
        """An instance from user values (strings allowed), each coerced by its field's type."""
        hints = typing.get_type_hints(cls)
        return cls(**{name: coerce(name, value, hints[name]) for name, value in values.items()})

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def changed(self, reference: Settings | None = None) -> dict[str, Any]:
        """The settings whose value differs from `reference`'s (by default, from the dataclass's defaults)."""
        usual = (reference or type(self)()).as_dict()
        return {name: value for name, value in self.as_dict().items() if value != usual[name]}


@dataclasses.dataclass(frozen=True)
class NoSettings(Settings):
    """A component without settings of its own."""


def coerce(name: str, value: Any, hint: Any) -> Any:
    optional = isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)
    base = next(t for t in typing.get_args(hint) if t is not type(None)) if optional else hint
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null", "")):
        if optional:
            return None
        raise ConfigError(name, f"must be a {base.__name__}, not empty")
    if base is bool:
        return _boolean(name, value)
    if base is int:
        return _integer(name, value)
    if base is float:
        return _number(name, value)
    if not isinstance(value, str):
        raise ConfigError(name, f"must be a string, got {value!r}")
    return value


def _boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ConfigError(name, f"must be true or false, got {value!r}")


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ConfigError(name, f"must be an integer, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(name, f"must be an integer, got {value!r}") from None


def _number(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(name, f"must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(name, f"must be a finite number, got {value!r}")
    return number


def one_of(name: str, value: Any, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ConfigError(name, f"{value!r} is not one of: {', '.join(allowed)}")


def positive(name: str, value: float | int) -> None:
    if not value > 0:
        raise ConfigError(name, f"must be > 0, got {value}")


def non_negative(name: str, value: float | int) -> None:
    if value < 0:
        raise ConfigError(name, f"must be >= 0, got {value}")


def at_most(name: str, value: float | int, limit: float | int, what: str) -> None:
    if value > limit:
        raise ConfigError(name, f"must be at most {limit} ({what}), got {value}")
