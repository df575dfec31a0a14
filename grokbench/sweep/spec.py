"""Sweep files: declarative YAML in `sweeps/`, checked completely before anything starts.

A sweep is a set of trials. `base` fixes settings (shared, the task's, a method's) for every trial; `grid` lists
values to cross (every combination, for every method); `methods` names the methods and, per method, fixed settings
or lists to sweep, with `by_loss` for settings that depend on the loss and `arms` for sets of settings that go
together (each arm its own trials, not crossed with the other arms). A `search` section replaces the grid with an
Optuna search of each method's strength. Every check names the file and the key.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from grokbench.config import SHARED, ConfigError, TrialConfig
from grokbench.resolve import config_from, resolve
from grokbench.settings import coerce
from grokbench.shipped import SWEEPS_DIR, sweep_names
from grokbench.sweep.errors import SweepError
from grokbench.sweep.keys import trial_key

TOP_LEVEL_KEYS = {
    "name",
    "description",
    "task",
    "budget",
    "base",
    "grid",
    "methods",
    "search",
    "resources",
    "checkpoint_every",
    "keep_checkpoints",
    "max_failures",
    "smoke",
}
RESOURCE_KEYS = {"cpus_per_trial", "gpus_per_trial", "max_concurrent"}
SEARCH_KEYS = {"num_samples", "space", "seed"}
RANGE_KEYS = {"low", "high", "log"}
SMOKE_KEYS = {"seeds", "max_epochs", "num_samples"}


def trial_fields(task: str) -> set[str]:
    """The keys a sweep of this task may set: the shared settings, the task's and every method's (a method's
    settings given to another method are refused when the trials are resolved)."""
    from grokbench.methods import METHODS
    from grokbench.tasks import TASKS

    own = TASKS[task].Settings.names() if task in TASKS else ()
    return {*SHARED, *own, *(name for m in METHODS.values() for name in m.Settings.names())}


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    log: bool = True


@dataclass(frozen=True)
class Search:
    num_samples: int  # Optuna trials per method
    space: dict[str, dict[str, Range]]  # method → TrialConfig field → range
    seed: int = 0


@dataclass(frozen=True)
class Resources:
    cpus_per_trial: float = 1
    gpus_per_trial: float = 0
    max_concurrent: int = 0  # 0: as many as the cluster's resources allow


@dataclass(frozen=True)
class SweepSpec:
    name: str
    path: Path
    description: str
    task: str
    max_epochs: int
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    methods: dict[str, dict[str, Any]]
    resources: Resources = field(default_factory=Resources)
    checkpoint_every: int = 500  # epochs
    keep_checkpoints: int = 2  # per trial, the latest; 1 where a checkpoint is large (a Grokfast MA window)
    max_failures: int = 3
    search: Search | None = None
    smoke: dict[str, Any] = field(default_factory=dict)
    only: dict[str, list[str]] = field(default_factory=dict)  # --only: setting → the values (as typed) to keep

    def trials(self) -> list[TrialConfig]:
        """Every trial of a grid sweep, resolved (task and method defaults filled in) and validated; seed-major,
        so that a sweep stopped early has whole comparisons (every method at seed 0) rather than one method."""
        out = []
        for method, settings in self.methods.items():
            for i, arm in enumerate(settings.get("arms") or [{}]):
                where = f"methods.{method}" + (f".arms[{i}]" if "arms" in settings else "")
                own = {k: v for k, v in {**settings, **arm}.items() if k != "arms"}
                axes = {**self.grid, **{k: v for k, v in own.items() if k != "by_loss" and isinstance(v, list)}}
                for combo in itertools.product(*axes.values()):
                    values = {**self.base, **dict(zip(axes, combo, strict=False))}
                    values.update(fixed_settings(own, values.get("loss")))
                    values.update(task=self.task, method=method, max_epochs=self.max_epochs)
                    out.append(self._resolve(values, where))
        out = [cfg for cfg in out if all(_matches(cfg.to_dict(), k, vs) for k, vs in self.only.items())]
        return sorted(out, key=lambda cfg: cfg.seed)  # stable: methods keep the file's order within a seed

    def _resolve(self, values: dict[str, Any], where: str) -> TrialConfig:
        try:
            return resolve(config_from(values))
        except ConfigError as err:
            raise SweepError(f"{self.path}: {where}: {err}") from None

    def with_overrides(
        self,
        seeds: list[int] | None = None,
        max_epochs: int | None = None,
        methods: list[str] | None = None,
        num_samples: int | None = None,
        only: dict[str, list[str]] | None = None,
        **resources: float | None,
    ) -> SweepSpec:
        """Flags override the file (and `resources`: cpus_per_trial, gpus_per_trial, max_concurrent); the result
        is checked like the file was."""
        changes: dict[str, Any] = {}
        given = {k: v for k, v in resources.items() if v is not None}
        if given:
            merged = {**dataclasses.asdict(self.resources), **given}
            changes["resources"] = Resources(
                cpus_per_trial=_positive_number(self.path, "--cpus-per-trial", merged["cpus_per_trial"]),
                gpus_per_trial=_non_negative(self.path, "--gpus-per-trial", merged["gpus_per_trial"]),
                max_concurrent=int(_non_negative(self.path, "--max-concurrent", merged["max_concurrent"])),
            )
        if seeds is not None:
            changes["grid"] = {**self.grid, "seed": seeds}
            changes["base"] = {k: v for k, v in self.base.items() if k != "seed"}
        if max_epochs is not None:
            changes["max_epochs"] = _positive_int(self.path, "max_epochs (--max-epochs)", max_epochs)
        if methods is not None:
            unknown = [m for m in methods if m not in self.methods]
            if unknown:
                raise SweepError(
                    f"{self.path}: --methods: {', '.join(unknown)} not in this sweep; it has: {', '.join(self.methods)}"
                )
            changes["methods"] = {m: self.methods[m] for m in methods}
            if self.search:
                changes["search"] = dataclasses.replace(
                    self.search, space={m: r for m, r in self.search.space.items() if m in methods}
                )
        if num_samples is not None and self.search:
            changes["search"] = dataclasses.replace(changes.get("search", self.search), num_samples=num_samples)
        spec = dataclasses.replace(self, **changes)
        if only:
            spec = spec._picking(only)
        spec.check()
        return spec

    def _picking(self, only: dict[str, list[str]]) -> SweepSpec:
        """The trials whose settings take the given values (`--only freeze_embeddings=false`): part of a grid run
        on its own, its trials the same (same keys) as in the whole sweep."""
        if self.search:
            raise SweepError(f"{self.path}: --only picks trials of a grid; a search has none to pick")
        known = trial_fields(self.task)
        settings = [cfg.to_dict() for cfg in self.trials()]
        for name, values in only.items():
            if name not in known:
                raise SweepError(f"{self.path}: --only {name}: not a setting of task {self.task} or its methods")
            taken = {s[name] for s in settings if name in s}
            if not taken:
                raise SweepError(
                    f"{self.path}: --only {name}: no trial of this sweep has this setting (its methods: "
                    f"{', '.join(self.methods)})"
                )
            missing = [v for v in values if not any(_matches(s, name, [v]) for s in settings)]
            if missing:
                shown = sorted(taken, key=lambda v: (v is None, str(type(v)), v))
                raise SweepError(
                    f"{self.path}: --only {name}={','.join(missing)}: no trial of this sweep has it; "
                    f"its trials have {name} = {', '.join(_yaml_scalar(v) for v in shown)}"
                )
        picked = dataclasses.replace(self, only={**self.only, **only})
        if not picked.trials():
            raise SweepError(f"{self.path}: --only {_describe(only)}: no trial of this sweep has all of these")
        return picked

    def smoke_version(self) -> SweepSpec:
        """The same sweep, small: the file's `smoke` section (fewer seeds, a short budget)."""
        spec = self.with_overrides(
            seeds=self.smoke.get("seeds"),
            max_epochs=self.smoke.get("max_epochs"),
            num_samples=self.smoke.get("num_samples"),
        )
        return dataclasses.replace(spec, name=f"{self.name}-smoke")

    def check(self) -> None:
        if self.search is None:
            keys = [trial_key(cfg.to_dict()) for cfg in self.trials()]
            if not keys:
                raise SweepError(f"{self.path}: grid: the sweep has no trials (an empty list?)")
            repeated = sorted(k for k, n in Counter(keys).items() if n > 1)
            if repeated:
                raise SweepError(
                    f"{self.path}: trial {repeated[0]} is listed more than once (a value repeated in "
                    "grid, methods or --seeds?)"
                )
        else:
            for method in self.search.space:
                listed = [k for k, v in self.methods[method].items() if isinstance(v, list)]
                if listed:
                    raise SweepError(
                        f"{self.path}: methods.{method}.{listed[0]}: a search runs each method at fixed "
                        "settings; give one value, or search it in search.space"
                    )
                values = {**self.base, **fixed_settings(self.methods[method], self.base.get("loss"))}
                self._resolve({**values, "task": self.task, "method": method}, f"search.space.{method}")


def _matches(settings: dict[str, Any], name: str, wanted: list[str]) -> bool:
    """Whether a trial has the setting and it is one of the values typed on the command line, each read as the
    setting's type the way every command-line setting is (`1e-2` and `0.01` are one float; `no` a bool)."""
    return name in settings and any(_reads_as(settings[name], name, text.strip()) for text in wanted)


def _reads_as(value: Any, name: str, text: str) -> bool:
    if value is None:
        return text.lower() in ("none", "null")
    try:
        return coerce(name, text, type(value)) == value
    except ConfigError:
        return False


def _yaml_scalar(value: Any) -> str:
    return yaml.safe_dump(value).split("\n")[0]


def _describe(only: dict[str, list[str]]) -> str:
    return " ".join(f"{name}={','.join(values)}" for name, values in only.items())


def fixed_settings(settings: dict[str, Any], loss: str | None) -> dict[str, Any]:
    """A method's settings that are one value, not a list to sweep: its own, then those `by_loss` gives its loss
    (its own `loss` where it fixes one, else `loss`)."""
    fixed = {k: v for k, v in settings.items() if k != "by_loss" and not isinstance(v, list)}
    return {**fixed, **settings.get("by_loss", {}).get(fixed.get("loss", loss), {})}


def build_sweep(name_or_path: str, overrides: dict[str, Any]) -> SweepSpec:
    """The sweep a command line asks for: the file, its smoke version if `smoke`, then the flag overrides.
    A sweep records `overrides` in its plan, so `--resume` rebuilds exactly the same sweep."""
    spec = load_sweep(name_or_path)
    if overrides.get("smoke"):
        spec = spec.smoke_version()
    return spec.with_overrides(**{k: v for k, v in overrides.items() if k != "smoke"})


def find_sweep_file(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise SweepError(
                f"sweep file {path} does not exist; sweeps shipped with grokbench: {', '.join(sweep_names())}"
            )
        return path.resolve()
    candidate = SWEEPS_DIR / f"{name_or_path}.yaml"
    if not candidate.is_file():
        raise SweepError(
            f"no sweep named {name_or_path!r}; sweeps shipped with grokbench: {', '.join(sweep_names())} "
            "(or give a path to a .yaml file)"
        )
    return candidate


def read_mapping(path: Path, what: str, keys: set[str]) -> dict[str, Any]:
    """A sweep or suite file's YAML mapping; a file that is not UTF-8 text, not YAML or not a mapping is refused
    with one line."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise SweepError(f"{path}: not UTF-8 text (byte {err.start}): a {what} is a YAML text file") from None
    except yaml.YAMLError as err:  # PyYAML's message spans lines: the problem, then where
        raise SweepError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(raw, dict):
        raise SweepError(f"{path}: a {what} is a mapping with keys {', '.join(sorted(keys))}")
    odd = _unprintable_key(raw)
    if odd is not None:  # every message names keys as they are: one holding a newline would break its line
        raise SweepError(f"{path}: {odd!r}: a key holds a newline or another unprintable character")
    return raw


def _unprintable_key(value: Any) -> str | None:
    """The first key, at any depth, that a one-line message could not show as it is."""
    if isinstance(value, list):
        return next((k for v in value if (k := _unprintable_key(v)) is not None), None)
    if not isinstance(value, dict):
        return None
    for key, inner in value.items():
        if isinstance(key, str) and not key.isprintable():
            return key
        found = _unprintable_key(inner)
        if found is not None:
            return found
    return None


def parse_resources(path: Path, raw: Any) -> Resources:
    """A sweep's or a suite's `resources` section (each key optional)."""
    given = _mapping(path, "resources", raw or {})
    _no_unknown_keys(path, "resources", given, RESOURCE_KEYS)
    return Resources(
        cpus_per_trial=_positive_number(path, "resources.cpus_per_trial", given.get("cpus_per_trial", 1)),
        gpus_per_trial=_non_negative(path, "resources.gpus_per_trial", given.get("gpus_per_trial", 0)),
        max_concurrent=int(_non_negative(path, "resources.max_concurrent", given.get("max_concurrent", 0))),
    )


def load_sweep(name_or_path: str) -> SweepSpec:
    path = find_sweep_file(name_or_path)
    raw = read_mapping(path, "sweep file", TOP_LEVEL_KEYS)
    spec = _parse(path, raw)
    spec.check()
    return spec


def _parse(path: Path, raw: dict[str, Any]) -> SweepSpec:
    def fail(key: str, message: str) -> SweepError:
        return SweepError(f"{path}: {key}: {message}")

    _no_unknown_keys(path, "", raw, TOP_LEVEL_KEYS)
    for required in ("task", "budget", "methods"):
        if required not in raw:
            raise fail(required, "missing (required)")
    from grokbench.tasks import TASKS

    if not isinstance(raw["task"], str) or raw["task"] not in TASKS:
        raise fail("task", f"{raw['task']!r} is not one of: {', '.join(TASKS)}")
    allowed = trial_fields(raw["task"])
    budget = _mapping(path, "budget", raw["budget"])
    _no_unknown_keys(path, "budget", budget, {"max_epochs"})
    base = _trial_fields(path, "base", raw.get("base") or {}, allowed)
    grid = _trial_fields(path, "grid", raw.get("grid") or {}, allowed)
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise fail(f"grid.{key}", f"must be a non-empty list of values, got {values!r}")
    methods = _mapping(path, "methods", raw["methods"])
    if not methods:
        raise fail("methods", "no methods listed")
    parsed_methods = {}
    for method, settings in methods.items():
        settings = _trial_fields(path, f"methods.{method}", settings or {}, allowed | {"by_loss", "arms"})
        _no_empty_lists(path, f"methods.{method}", settings)
        by_loss = _mapping(path, f"methods.{method}.by_loss", settings.get("by_loss", {}))
        for loss, loss_settings in by_loss.items():
            _trial_fields(path, f"methods.{method}.by_loss.{loss}", loss_settings, allowed)
        if "arms" in settings:
            settings["arms"] = _arms(path, f"methods.{method}.arms", settings["arms"], allowed)
        parsed_methods[str(method)] = settings
    smoke = _mapping(path, "smoke", raw.get("smoke") or {})
    _no_unknown_keys(path, "smoke", smoke, SMOKE_KEYS)
    return SweepSpec(
        name=str(raw.get("name") or path.stem),
        path=path,
        description=str(raw.get("description", "")),
        task=str(raw["task"]),
        max_epochs=_positive_int(path, "budget.max_epochs", budget.get("max_epochs")),
        base=base,
        grid=grid,
        methods=parsed_methods,
        resources=parse_resources(path, raw.get("resources")),
        checkpoint_every=_positive_int(path, "checkpoint_every", raw.get("checkpoint_every", 500)),
        keep_checkpoints=_positive_int(path, "keep_checkpoints", raw.get("keep_checkpoints", 2)),
        max_failures=int(_non_negative(path, "max_failures", raw.get("max_failures", 3))),
        search=_parse_search(path, raw["search"], parsed_methods, allowed) if "search" in raw else None,
        smoke=smoke,
    )


def _parse_search(path: Path, raw: Any, methods: dict[str, Any], allowed: set[str]) -> Search:
    raw = _mapping(path, "search", raw)
    _no_unknown_keys(path, "search", raw, SEARCH_KEYS)
    space_raw = _mapping(path, "search.space", raw.get("space"))
    space: dict[str, dict[str, Range]] = {}
    for method, ranges in space_raw.items():
        if method not in methods:
            raise SweepError(f"{path}: search.space.{method}: not one of the sweep's methods ({', '.join(methods)})")
        space[method] = parse_ranges(path, f"search.space.{method}", ranges, allowed)
    if not space:
        raise SweepError(f"{path}: search.space: no method to search")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:  # as Optuna's sampler takes
        raise SweepError(f"{path}: search.seed: must be an integer from 0 to 2**32 - 1, got {seed!r}")
    return Search(_positive_int(path, "search.num_samples", raw.get("num_samples")), space, seed)


def parse_ranges(path: Path, where: str, raw: Any, allowed: set[str]) -> dict[str, Range]:
    """Settings' ranges, `{name: {low, high, log}}`: low < high, both positive and finite; log true by default."""
    raw = _mapping(path, where, raw)
    _no_unknown_keys(path, where, raw, allowed)
    out = {}
    for key, spec in raw.items():
        at = f"{where}.{key}"
        spec = _mapping(path, at, spec)
        _no_unknown_keys(path, at, spec, RANGE_KEYS)
        low, high = (_positive_number(path, f"{at}.{k}", spec.get(k)) for k in ("low", "high"))
        if not low < high:
            raise SweepError(f"{path}: {at}: low ({low}) must be below high ({high})")
        log = spec.get("log", True)
        if not isinstance(log, bool):
            raise SweepError(f"{path}: {at}.log: must be true or false, got {log!r}")
        out[str(key)] = Range(low, high, log)
    return out


def _arms(path: Path, where: str, raw: Any, allowed: set[str]) -> list[dict]:
    """A method's arms: a non-empty list of mappings of settings (fixed values or lists to cross within the arm)."""
    if not isinstance(raw, list) or not raw:
        raise SweepError(
            f"{path}: {where}: must be a non-empty list of mappings (one per arm: settings that go "
            f"together), got {raw!r}"
        )
    arms = [_trial_fields(path, f"{where}[{i}]", arm or {}, allowed) for i, arm in enumerate(raw)]
    for i, arm in enumerate(arms):
        _no_empty_lists(path, f"{where}[{i}]", arm)
    return arms


def _no_empty_lists(path: Path, where: str, settings: dict) -> None:
    for key, value in settings.items():
        if isinstance(value, list) and not value:
            raise SweepError(f"{path}: {where}.{key}: an empty list gives no trials")


def _no_unknown_keys(path: Path, where: str, raw: dict, allowed: set[str]) -> None:
    for key in raw:
        if key not in allowed:
            prefix = f"{where}." if where else ""
            raise SweepError(f"{path}: {prefix}{key}: unknown key; allowed here: {', '.join(sorted(allowed))}")


def _mapping(path: Path, where: str, raw: Any) -> dict:
    if not isinstance(raw, dict):
        raise SweepError(f"{path}: {where}: must be a mapping (key: value lines), got {raw!r}")
    return raw


def _trial_fields(path: Path, where: str, raw: Any, allowed: set[str]) -> dict:
    raw = _mapping(path, where, raw)
    _no_unknown_keys(path, where, raw, allowed)
    return dict(raw)


def _positive_int(path: Path, where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SweepError(f"{path}: {where}: must be a positive integer, got {value!r}")
    return value


def _positive_number(path: Path, where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise SweepError(f"{path}: {where}: must be a positive number, got {value!r}")
    return value


def _non_negative(path: Path, where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise SweepError(f"{path}: {where}: must be a number >= 0, got {value!r}")
    return value
