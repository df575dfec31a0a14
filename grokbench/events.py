"""When a run memorised and when it grokked, read off its evaluations by its task's criterion."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Protocol

MEMORISED_TRAIN_ACCURACY = 0.99


class Criterion(Protocol):
    """A task's definition of the two events, from one evaluation's metrics."""

    def memorised(self, metrics: Mapping[str, float]) -> bool: ...

    def grokked(self, metrics: Mapping[str, float]) -> bool: ...


@dataclass(frozen=True)
class AccuracyCriterion:
    """Memorised at train accuracy ≥ 0.99; grokked at test accuracy strictly above the task's threshold."""

    grok_threshold: float
    memorise_threshold: float = MEMORISED_TRAIN_ACCURACY

    def memorised(self, metrics: Mapping[str, float]) -> bool:
        return metrics["train_acc"] >= self.memorise_threshold

    def grokked(self, metrics: Mapping[str, float]) -> bool:
        return metrics["test_acc"] > self.grok_threshold


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

    def update(self, at: Milestone, metrics: Mapping[str, float]) -> None:
        if self.memorised is None and self.criterion.memorised(metrics):
            self.memorised = at
        if self.grokked is None and self.criterion.grokked(metrics):
            self.grokked = at

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
        def field(milestone: Milestone | None, name: str) -> Any:
            return None if milestone is None else getattr(milestone, name)

        return {
            "steps_to_memorise": field(self.memorised, "step"),
            "epochs_to_memorise": field(self.memorised, "epoch"),
            "time_to_memorise_s": field(self.memorised, "time_s"),
            "steps_to_grok": field(self.grokked, "step"),
            "epochs_to_grok": field(self.grokked, "epoch"),
            "time_to_grok_s": field(self.grokked, "time_s"),
            "grok_phase_time_s": self.grok_phase_time_s,
            "grokked_before_memorised": self.grokked_before_memorised,
        }

    def state_dict(self) -> dict[str, Any]:
        """The milestones (the criterion belongs to the task, not to the saved state)."""
        milestone = lambda m: None if m is None else asdict(m)  # noqa: E731
        return {"memorised": milestone(self.memorised), "grokked": milestone(self.grokked)}

    @classmethod
    def from_state(cls, criterion: Criterion, state: dict[str, Any]) -> GrokEvents:
        def milestone(value: dict | None) -> Milestone | None:
            return None if value is None else Milestone(**value)

        return cls(criterion, milestone(state["memorised"]), milestone(state["grokked"]))
