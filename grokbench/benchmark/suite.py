"""Suite files: a benchmark's workloads, arms, rulesets and search spaces, declarative YAML in `sweeps/benchmarks/`,
checked completely before anything starts; every error names the file and the key.

A workload is a task with its preset or settings, a budget in optimizer updates and the updates the fastest arm is
expected to need (from committed results; it sizes the cost estimate with the r_max stopper). An arm is a name for
a method with fixed settings (`stablemax: {method: baseline, loss: stablemax}`) and the ranges it tunes (`search`).
Under the `paper` ruleset each workload's published regime is fixed and an arm draws only its own ranges; under
`open` every arm also draws the ruleset's shared ranges (lr and weight decay) but for a setting the arm fixes:
norm_constraint fixes `weight_decay: 0`, because Omnigrok holds the weight norm instead of decaying it (the method
refuses a weight decay a user gives). What each arm tunes under each ruleset is read off the file (`Suite.space`),
never special-cased in code.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grokbench.config import SHARED, ConfigError, TrialConfig
from grokbench.resolve import config_from, resolve
from grokbench.shipped import SUITES_DIR
from grokbench.sweep.errors import SweepError
from grokbench.sweep.keys import EXPERIMENT_PREFIX
from grokbench.sweep.spec import (
    Range,
    Resources,
    _mapping,
    _no_unknown_keys,
    _non_negative,
    _positive_int,
    _positive_number,
    parse_ranges,
    parse_resources,
    read_mapping,
)

RULESETS = ("paper", "open")
PHASES = ("tuning", "confirmation")
R_MAX = 4.0  # AlgoPerf's: a time above r_max × the best on a workload scores as a miss
# tuning seeds start here; the confirmation seeds are 0, 1, ..., C − 1, so no tuning trial uses one
TUNING_SEED_BASE = 1000

# the MLflow tags of a benchmark's trial runs
BENCHMARK_TAG = "grokbench.benchmark"  # the suite's name
WORKLOAD_TAG = "grokbench.workload"
ARM_TAG = "grokbench.arm"
RULESET_TAG = "grokbench.ruleset"
STUDY_TAG = "grokbench.study"  # an int
PHASE_TAG = "grokbench.phase"  # one of PHASES
STOPPED_BY_R_MAX = "r_max"
# the benchmark's parent run: its kind (the grokbench.parent tag), the suite file's hash, and its artifacts
BENCHMARK_PARENT = "benchmark"
SUITE_HASH_TAG = "grokbench.suite_sha256"
SUITE_ARTIFACT = "suite.yaml"  # the suite file as run
COSTS_ARTIFACT = "costs.json"  # the cost measurement: {"machine", "measure_updates", "seconds_per_update"}

TOP_LEVEL_KEYS = {
    "name",
    "description",
    "r_max",
    "rulesets",
    "confirmation_seeds",
    "workloads",
    "arms",
    "resources",
    "checkpoint_every",
    "max_failures",
}
RULESET_KEYS = {"studies", "trials", "ranges"}
WORKLOAD_KEYS = {"task", "settings", "budget_updates", "expected_best_updates", "ranges", "arms"}
SEARCH = "search"  # the key of an arm's own ranges, beside its fixed settings
RESERVED = {"task", "method", "seed", "max_epochs"}  # the benchmark sets these for each trial
# a task refuses an arm through these settings: the method (a capability it lacks, Muon's hidden matrices) or the
# loss (StableMax needs a class distribution)
REFUSALS = ("method", "loss")


@dataclass(frozen=True)
class Coordinates:
    """Where a trial sits in the benchmark. A confirmation trial keeps the study its setting won and counts its
    seeds as trials. The coordinator puts them in Tune's config (`config["trial"]["benchmark"]`), where the r_max
    stopper reads them."""

    workload: str
    arm: str
    ruleset: str  # one of RULESETS
    phase: str  # one of PHASES
    study: int
    trial: int

    def __post_init__(self) -> None:
        if self.ruleset not in RULESETS or self.phase not in PHASES or not _whole(self.study, self.trial):
            raise ValueError(f"benchmark trial coordinates: bad ruleset, phase, study or trial in {self}")

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> Coordinates:
        """From Tune's config of a trial: config["trial"]["benchmark"]."""
        try:
            return cls(**{f.name: config["trial"]["benchmark"][f.name] for f in dataclasses.fields(cls)})
        except (KeyError, TypeError) as err:
            raise ValueError(f"not a benchmark trial's config: no trial.benchmark.{err}") from None

    def tags(self, suite: str) -> dict[str, str]:
        """The MLflow tags of the trial's run."""
        return {
            BENCHMARK_TAG: suite,
            WORKLOAD_TAG: self.workload,
            ARM_TAG: self.arm,
            RULESET_TAG: self.ruleset,
            STUDY_TAG: str(self.study),
            PHASE_TAG: self.phase,
        }


def _whole(*values: Any) -> bool:
    return all(type(v) is int for v in values)


@dataclass(frozen=True)
class Ruleset:
    name: str  # one of RULESETS
    studies: int  # S
    trials: int  # T, per study
    ranges: dict[str, Range] = field(default_factory=dict)  # open: drawn by every arm but where the arm fixes it


@dataclass(frozen=True)
class ArmSettings:
    """Fixed settings and ranges: an arm's own, or those a workload gives it on that workload (which win)."""

    settings: dict[str, Any] = field(default_factory=dict)
    search: dict[str, Range] = field(default_factory=dict)


@dataclass(frozen=True)
class Arm:
    name: str
    method: str
    own: ArmSettings


@dataclass(frozen=True)
class Workload:
    name: str
    task: str
    settings: dict[str, Any]  # the task's preset and settings (its published regime)
    budget_updates: int
    expected_best_updates: dict[str, int]  # ruleset → updates the fastest arm needs, from committed results
    ranges: dict[str, Range] = field(default_factory=dict)  # this workload's own shared ranges under open
    arms: dict[str, ArmSettings] = field(default_factory=dict)  # arm → its settings on this workload


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    description: str
    rulesets: dict[str, Ruleset]
    confirmation_seeds: int  # C
    workloads: dict[str, Workload]
    arms: dict[str, Arm]
    r_max: float = R_MAX
    resources: Resources = field(default_factory=Resources)
    checkpoint_every: int = 500  # epochs
    max_failures: int = 3
    keep_checkpoints: int = 2  # each trial's newest checkpoints Tune keeps (a sweep's default)

    @property
    def experiment(self) -> str:
        """The MLflow experiment of every run of the benchmark, tuning and confirmation alike."""
        return f"{EXPERIMENT_PREFIX}benchmark_{self.name}"

    def with_resources(self, **given: float | None) -> Suite:
        """The flags (--cpus-per-trial, --gpus-per-trial, --max-concurrent) over the file's `resources`."""
        merged = {**dataclasses.asdict(self.resources), **{k: v for k, v in given.items() if v is not None}}
        resources = Resources(
            cpus_per_trial=_positive_number(self.path, "--cpus-per-trial", merged["cpus_per_trial"]),
            gpus_per_trial=_non_negative(self.path, "--gpus-per-trial", merged["gpus_per_trial"]),
            max_concurrent=int(_non_negative(self.path, "--max-concurrent", merged["max_concurrent"])),
        )
        return dataclasses.replace(self, resources=resources)

    def fixed(self, workload: str, arm: str) -> dict[str, Any]:
        """The arm's fixed settings on the workload: its own, then those the workload gives it."""
        given = self.workloads[workload].arms.get(arm, ArmSettings())
        return {**self.arms[arm].own.settings, **given.settings}

    def space(self, workload: str, arm: str, ruleset: str) -> dict[str, Range]:
        """What the arm tunes on the workload under the ruleset: under open the shared ranges (but for a setting
        the arm fixes), then its own."""
        w = self.workloads[workload]
        own = {**self.arms[arm].own.search, **w.arms.get(arm, ArmSettings()).search}
        if ruleset != "open":
            return own
        fixed = self.fixed(workload, arm)
        shared = {k: r for k, r in {**self.rulesets["open"].ranges, **w.ranges}.items() if k not in fixed}
        return {**shared, **own}

    def config(self, workload: str, arm: str, drawn: dict[str, Any], seed: int) -> TrialConfig:
        """A trial of the arm on the workload with the drawn settings, resolved; ConfigError if it cannot run."""
        w = self.workloads[workload]
        values = {**w.settings, **self.fixed(workload, arm), **drawn}
        return resolve(config_from({**values, "task": w.task, "method": self.arms[arm].method, "seed": seed}))

    @functools.cached_property
    def refused(self) -> dict[tuple[str, str], str]:
        """(workload, arm) → why the workload's task refuses the arm (StableMax on a scalar output, Muon on a
        model without hidden matrices, adversarial training without accuracy): n/a, not an error. Any other
        setting a trial refuses is a mistake in the file."""
        out = {}
        for workload in self.workloads:
            for arm in self.arms:
                try:
                    self.config(workload, arm, {}, seed=0)
                except ConfigError as err:
                    if err.field not in REFUSALS:
                        raise SweepError(f"{self.path}: arms.{arm}: on workload {workload}: {err}") from None
                    out[workload, arm] = str(err)
        return out

    def applicable(self) -> list[tuple[str, str]]:
        """The (workload, arm) pairs that run, in the file's order."""
        return [(w, a) for w in self.workloads for a in self.arms if (w, a) not in self.refused]

    def check(self) -> None:
        """Every arm runs on some workload, and every corner of every space resolves where the arm runs."""
        for arm in self.arms:
            reasons = [self.refused[w, arm] for w in self.workloads if (w, arm) in self.refused]
            if len(reasons) == len(self.workloads):
                raise SweepError(f"{self.path}: arms.{arm}: no workload of the suite can run it ({reasons[0]})")
        for workload in self.workloads:  # a typo in its loss or task settings refuses every arm: not an n/a
            reasons = [self.refused[workload, a] for a in self.arms if (workload, a) in self.refused]
            if len(reasons) == len(self.arms):
                raise SweepError(f"{self.path}: workloads.{workload}: it can run no arm of the suite ({reasons[0]})")
        for workload, arm in self.applicable():
            for ruleset in self.rulesets:
                space = self.space(workload, arm, ruleset)
                for end in ("low", "high"):
                    drawn = {k: float(getattr(r, end)) for k, r in space.items()}
                    try:
                        self.config(workload, arm, drawn, seed=0)
                    except ConfigError as err:
                        raise SweepError(
                            f"{self.path}: arms.{arm}: under the {ruleset} ruleset on workload {workload}, at the "
                            f"{end} end of its ranges: {err} (a setting the arm fixes is never drawn)"
                        ) from None


def suite_names() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def find_suite_file(name_or_path: str) -> Path:
    """`lite` → sweeps/benchmarks/lite.yaml; a path to a .yaml file is read as given."""
    path = Path(name_or_path)
    shipped = ", ".join(suite_names())
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise SweepError(f"suite file {path} does not exist; suites shipped with grokbench: {shipped}")
        return path.resolve()
    candidate = SUITES_DIR / f"{name_or_path}.yaml"
    if not candidate.is_file():
        raise SweepError(
            f"no suite named {name_or_path!r}; suites shipped with grokbench: {shipped} "
            "(or give a path to a .yaml file)"
        )
    return candidate


def load_suite(name_or_path: str) -> Suite:
    path = find_suite_file(name_or_path)
    suite = _parse(path, read_mapping(path, "suite file", TOP_LEVEL_KEYS))
    suite.check()
    return suite


def _parse(path: Path, raw: dict[str, Any]) -> Suite:
    _no_unknown_keys(path, "", raw, TOP_LEVEL_KEYS)
    for required in ("rulesets", "confirmation_seeds", "workloads", "arms"):
        if required not in raw:
            raise SweepError(f"{path}: {required}: missing (required)")
    rulesets = _rulesets(path, raw["rulesets"])
    seeds = _positive_int(path, "confirmation_seeds", raw["confirmation_seeds"])
    if seeds > TUNING_SEED_BASE:
        raise SweepError(f"{path}: confirmation_seeds: at most {TUNING_SEED_BASE} (the tuning seeds start there)")
    r_max = _positive_number(path, "r_max", raw.get("r_max", R_MAX))
    if r_max <= 1:
        raise SweepError(f"{path}: r_max: must be above 1 (a time r_max × the best scores as a miss), got {r_max}")
    arms = {str(name): _arm(path, str(name), spec) for name, spec in _nonempty(path, "arms", raw["arms"]).items()}
    shared = set(rulesets["open"].ranges) if "open" in rulesets else set()
    for arm in arms.values():
        overlap = sorted(shared & set(arm.own.search))
        if overlap:
            raise SweepError(
                f"{path}: arms.{arm.name}.{SEARCH}.{overlap[0]}: drawn from the open ruleset's shared range, the "
                "same for every arm; an arm's own ranges are its method's settings"
            )
    workloads = {
        str(name): _workload(path, str(name), spec, rulesets, arms)
        for name, spec in _nonempty(path, "workloads", raw["workloads"]).items()
    }
    return Suite(
        name=str(raw.get("name") or path.stem),
        path=path,
        description=str(raw.get("description", "")),
        rulesets=rulesets,
        confirmation_seeds=seeds,
        workloads=workloads,
        arms=arms,
        r_max=r_max,
        resources=parse_resources(path, raw.get("resources")),
        checkpoint_every=_positive_int(path, "checkpoint_every", raw.get("checkpoint_every", 500)),
        max_failures=int(_non_negative(path, "max_failures", raw.get("max_failures", 3))),
    )


def _rulesets(path: Path, raw: Any) -> dict[str, Ruleset]:
    raw = _nonempty(path, "rulesets", raw)
    _no_unknown_keys(path, "rulesets", raw, set(RULESETS))
    out = {}
    for name in RULESETS:
        if name not in raw:
            continue
        where = f"rulesets.{name}"
        spec = _mapping(path, where, raw[name])
        _no_unknown_keys(path, where, spec, RULESET_KEYS if name == "open" else RULESET_KEYS - {"ranges"})
        shared = {*SHARED} - RESERVED - {"preset"}
        out[name] = Ruleset(
            name=name,
            studies=_positive_int(path, f"{where}.studies", spec.get("studies")),
            trials=_positive_int(path, f"{where}.trials", spec.get("trials")),
            ranges=parse_ranges(path, f"{where}.ranges", spec.get("ranges") or {}, shared),
        )
    return out


def _arm(path: Path, name: str, raw: Any) -> Arm:
    from grokbench.methods import METHODS

    where = f"arms.{name}"
    raw = _mapping(path, where, raw or {})
    method = raw.get("method")
    if not isinstance(method, str) or method not in METHODS:
        raise SweepError(f"{path}: {where}.method: {method!r} is not one of: {', '.join(METHODS)}")
    allowed = ({*SHARED, *METHODS[method].Settings.names()} - RESERVED - {"preset"}) | {"method"}
    own = _arm_settings(path, where, raw, allowed)
    return Arm(name, method, ArmSettings({k: v for k, v in own.settings.items() if k != "method"}, own.search))


def _arm_settings(path: Path, where: str, raw: dict, allowed: set[str]) -> ArmSettings:
    """Fixed settings (one value each) and, under `search`, ranges of the arm's method's settings."""
    _no_unknown_keys(path, where, raw, allowed | {SEARCH})
    for key, value in raw.items():
        if isinstance(value, list | dict) and key != SEARCH:
            raise SweepError(f"{path}: {where}.{key}: an arm fixes one value (a range to tune goes under {SEARCH})")
    search = parse_ranges(path, f"{where}.{SEARCH}", raw.get(SEARCH) or {}, allowed - {"method"})
    return ArmSettings({k: v for k, v in raw.items() if k != SEARCH}, search)


def _workload(path: Path, name: str, raw: Any, rulesets: dict[str, Ruleset], arms: dict[str, Arm]) -> Workload:
    from grokbench.methods import METHODS
    from grokbench.tasks import TASKS

    where = f"workloads.{name}"
    raw = _mapping(path, where, raw)
    _no_unknown_keys(path, where, raw, WORKLOAD_KEYS)
    for required in ("task", "budget_updates", "expected_best_updates"):
        if required not in raw:
            raise SweepError(f"{path}: {where}.{required}: missing (required)")
    task = raw["task"]
    if not isinstance(task, str) or task not in TASKS:
        raise SweepError(f"{path}: {where}.task: {task!r} is not one of: {', '.join(TASKS)}")
    settings = _mapping(path, f"{where}.settings", raw.get("settings") or {})
    _no_unknown_keys(path, f"{where}.settings", settings, {*SHARED, *TASKS[task].Settings.names()} - RESERVED)
    open_keys = set(rulesets["open"].ranges) if "open" in rulesets else set()
    ranges = parse_ranges(path, f"{where}.ranges", raw.get("ranges") or {}, open_keys)
    given = _mapping(path, f"{where}.arms", raw.get("arms") or {})
    per_arm = {}
    for arm, spec in given.items():
        if arm not in arms:
            raise SweepError(f"{path}: {where}.arms.{arm}: not one of the suite's arms ({', '.join(arms)})")
        allowed = {*SHARED, *METHODS[arms[arm].method].Settings.names()} - RESERVED - {"preset"}
        per_arm[str(arm)] = _arm_settings(
            path, f"{where}.arms.{arm}", _mapping(path, f"{where}.arms.{arm}", spec), allowed
        )
    return Workload(
        name=name,
        task=task,
        settings=dict(settings),
        budget_updates=_positive_int(path, f"{where}.budget_updates", raw["budget_updates"]),
        expected_best_updates=_expected(path, f"{where}.expected_best_updates", raw["expected_best_updates"], rulesets),
        ranges=ranges,
        arms=per_arm,
    )


def _expected(path: Path, where: str, raw: Any, rulesets: dict[str, Ruleset]) -> dict[str, int]:
    """One number for every ruleset, or one per ruleset (`{paper: 10080, open: 640}`)."""
    if not isinstance(raw, dict):
        return dict.fromkeys(rulesets, _positive_int(path, where, raw))
    _no_unknown_keys(path, where, raw, set(rulesets))
    missing = [r for r in rulesets if r not in raw]
    if missing:
        raise SweepError(f"{path}: {where}.{missing[0]}: missing (give one number, or one per ruleset)")
    return {r: _positive_int(path, f"{where}.{r}", raw[r]) for r in rulesets}


def _nonempty(path: Path, where: str, raw: Any) -> dict:
    raw = _mapping(path, where, raw)
    if not raw:
        raise SweepError(f"{path}: {where}: none listed")
    return raw
