"""When a run memorised and when it grokked, read off its evaluations by its task's criterion."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

MEMORISED_TRAIN_ACCURACY = 0.99


class Criterion(Protocol):
    """A task's definition of the two events, from one evaluation's metrics."""

    def memorised(self, metrics: Mapping[str, float]) -> bool: ...

    def grokked(self, metrics: Mapping[str, float]) -> bool: ...

    def further_events(self) -> Mapping[str, Callable[[Mapping[str, float]], bool]]:
        """Further named events whose first occurrence the summary reports (as steps_to_<name>, ...). A criterion
        may also name one of them its `stop_event`: the run ends where that happens (see `GrokEvents.settled`)."""
        ...


def stop_event(criterion: Criterion) -> str | None:
    """The further event at which the criterion's runs end, grokked or not (a polynomial run that converged), if
    it names one."""
    return getattr(criterion, "stop_event", None)


@dataclass(frozen=True)
class AccuracyCriterion:
    """Memorised at train accuracy ≥ 0.99; grokked at test accuracy strictly above the task's threshold."""

    grok_threshold: float
    memorise_threshold: float = MEMORISED_TRAIN_ACCURACY

    def memorised(self, metrics: Mapping[str, float]) -> bool:
        return metrics["train_acc"] >= self.memorise_threshold

    def grokked(self, metrics: Mapping[str, float]) -> bool:
        return metrics["test_acc"] > self.grok_threshold

    def further_events(self) -> Mapping[str, Callable[[Mapping[str, float]], bool]]:
        return {}


@dataclass(frozen=True)
class LossCriterion:
    """For a regression task whose loss at initialisation is known: memorised when the train loss relative to
    it falls below `memorise_threshold`, grokked when the relative test loss falls below `grok_threshold`, and a
    further event `grok_strict` at the stricter `strict_threshold`, so conclusions can be checked under it. The
    evaluator reports the relative losses as `train_loss_rel` and `test_loss_rel`."""

    memorise_threshold: float
    grok_threshold: float
    strict_threshold: float

    def memorised(self, metrics: Mapping[str, float]) -> bool:
        return metrics["train_loss_rel"] < self.memorise_threshold

    def grokked(self, metrics: Mapping[str, float]) -> bool:
        return metrics["test_loss_rel"] < self.grok_threshold

    def further_events(self) -> Mapping[str, Callable[[Mapping[str, float]], bool]]:
        return {"grok_strict": lambda metrics: metrics["test_loss_rel"] < self.strict_threshold}


@dataclass(frozen=True)
class Milestone:
    step: int  # optimiser updates
    epoch: int
    time_s: float  # training seconds (updates only)


@dataclass
class GrokEvents:
    """The first evaluation at which the criterion says memorised, and the first at which it says grokked."""

    criterion: Criterion
    memorised: Milestone | None = None
    grokked: Milestone | None = None
    further: dict[str, Milestone | None] = field(default_factory=dict)  # the criterion's further events

    def update(self, at: Milestone, metrics: Mapping[str, float]) -> None:
        if self.memorised is None and self.criterion.memorised(metrics):
            self.memorised = at
        if self.grokked is None and self.criterion.grokked(metrics):
            self.grokked = at
        for name, happened in self.criterion.further_events().items():
            if self.further.get(name) is None and happened(metrics):
                self.further[name] = at

    @property
    def settled(self) -> Milestone | None:
        """The evaluation by which the run grokked and every further event happened (the latest of them): where
        a run that stops at grokking stops, so that a stricter further event is measured too. A criterion that
        names one of its further events its `stop_event` (a run that has converged) settles there, grokked or not."""
        ends_at = stop_event(self.criterion)
        if ends_at is not None and self.further.get(ends_at) is not None:
            return self.further[ends_at]
        if self.grokked is None or any(self.further.get(name) is None for name in self.criterion.further_events()):
            return None
        return max([self.grokked, *self.further.values()], key=lambda m: m.step)

    @property
    def grokked_before_memorised(self) -> bool:
        return self.grokked is not None and (self.memorised is None or self.grokked.step < self.memorised.step)

    @property
    def grok_phase_time_s(self) -> float | None:
        """Time to grok − time to memorise; 0 (and flagged) when a run groks before it memorises."""
        if self.grokked is None:
            return None
        if self.grokked_before_memorised:
            return 0.0
        return self.grokked.time_s - self.memorised.time_s

    def summary(self) -> dict[str, Any]:
        return {
            **_milestone_fields("memorise", self.memorised),
            **_milestone_fields("grok", self.grokked),
            "grok_phase_time_s": self.grok_phase_time_s,
            "grokked_before_memorised": self.grokked_before_memorised,
            **{
                key: value
                for name in self.criterion.further_events()
                for key, value in _milestone_fields(name, self.further.get(name)).items()
            },
        }

    def state_dict(self) -> dict[str, Any]:
        """The milestones (the criterion belongs to the task, not to the saved state)."""
        milestone = lambda m: None if m is None else asdict(m)  # noqa: E731
        state = {"memorised": milestone(self.memorised), "grokked": milestone(self.grokked)}
        if self.further:
            state["further"] = {name: milestone(m) for name, m in self.further.items()}
        return state

    @classmethod
    def from_state(cls, criterion: Criterion, state: dict[str, Any]) -> GrokEvents:
        def milestone(value: dict | None) -> Milestone | None:
            return None if value is None else Milestone(**value)

        further = {name: milestone(m) for name, m in state.get("further", {}).items()}
        return cls(criterion, milestone(state["memorised"]), milestone(state["grokked"]), further)


def _milestone_fields(event: str, milestone: Milestone | None) -> dict[str, Any]:
    def value(name: str) -> Any:
        return None if milestone is None else getattr(milestone, name)

    return {
        f"steps_to_{event}": value("step"),
        f"epochs_to_{event}": value("epoch"),
        f"time_to_{event}_s": value("time_s"),
    }
