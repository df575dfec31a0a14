"""When a run memorised and when it grokked, read off its evaluations."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

MEMORISED_TRAIN_ACCURACY = 0.99


@dataclass(frozen=True)
class Milestone:
    step: int  # optimiser updates
    epoch: int
    time_s: float  # training seconds (updates only)


@dataclass
class GrokEvents:
    """Memorised: the first evaluation with train accuracy ≥ 0.99. Grokked: the first evaluation with test
    accuracy strictly above the task's threshold."""

    grok_threshold: float
    memorised: Milestone | None = None
    grokked: Milestone | None = None

    def update(self, at: Milestone, train_accuracy: float, test_accuracy: float) -> None:
        if self.memorised is None and train_accuracy >= MEMORISED_TRAIN_ACCURACY:
            self.memorised = at
        if self.grokked is None and test_accuracy > self.grok_threshold:
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
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> GrokEvents:
        def milestone(value: dict | None) -> Milestone | None:
            return None if value is None else Milestone(**value)

        return cls(state["grok_threshold"], milestone(state["memorised"]), milestone(state["grokked"]))
