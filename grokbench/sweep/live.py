"""The sweep's terminal: one live status line instead of Ray's tables, and the closing summary table."""

from __future__ import annotations

import sys
import time
from collections import Counter, defaultdict
from statistics import median
from typing import Any

from ray import tune

from grokbench.progress import duration

REDRAW_S = 1.0
LOG_EVERY_S = 30.0


class LiveView(tune.Callback):
    """Trials queued / running / grokked / censored / diverged / failed, elapsed time and an ETA."""

    def __init__(self, total: int):
        self.total = total
        self._reset()

    def _reset(self) -> None:
        self.started = time.monotonic()
        self.running: set[str] = set()
        self.outcome: dict[str, str] = {}  # trial id → its outcome; once per trial, however often it reports
        self.durations: list[float] = []
        self.trial_started: dict[str, float] = {}
        self.resumed: set[str] = set()  # began before this driver: their time here says nothing of a trial's
        self.pace_from: dict[str, tuple[float, int]] = {}  # trial id → (time, epoch) it was first seen training at
        self.position: dict[str, tuple[float, int, int]] = {}  # trial id → (time, epoch, budget) at its last report
        self.last_draw = 0.0
        self.live = sys.stderr.isatty()
        self.states: dict[str, str] = {}  # every trial seen, across the sweep's Tune experiments

    def __getstate__(self) -> dict[str, Any]:
        return {"total": self.total}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.total = state["total"]
        self._reset()

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.add(trial.trial_id)
        if trial.trial_id not in self.trial_started and trial.checkpoint is not None:
            self.resumed.add(trial.trial_id)
        self.trial_started.setdefault(trial.trial_id, time.monotonic())
        if trial.trial_id not in self.resumed:
            self.pace_from.setdefault(trial.trial_id, (self.trial_started[trial.trial_id], 0))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if result.get("curve"):
            now, epoch = time.monotonic(), result["curve"][-1]["epoch"]
            self.pace_from.setdefault(trial.trial_id, (now, epoch))
            self.position[trial.trial_id] = (now, epoch, trial.config["trial"]["config"]["max_epochs"])
        if "summary" in result and trial.trial_id not in self.outcome:
            self.outcome[trial.trial_id] = result["summary"]["status"]
            if trial.trial_id not in self.resumed:
                self.durations.append(time.monotonic() - self.trial_started.get(trial.trial_id, self.started))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)
        self.outcome.setdefault(trial.trial_id, "failed")

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        if now - self.last_draw < (REDRAW_S if self.live else LOG_EVERY_S):
            return
        self.last_draw = now
        self.draw(trials)

    def draw(self, trials: list) -> None:
        self.states.update((t.trial_id, t.status) for t in trials)
        previously_done = sum(  # finished before a --resume: never started by this driver
            1 for trial_id, status in self.states.items()
            if status in ("TERMINATED", "ERROR") and trial_id not in self.trial_started
        )
        outcomes = Counter(self.outcome.values())
        finished = previously_done + len(self.outcome)
        queued = max(self.total - len(self.running) - finished, 0)
        elapsed = time.monotonic() - self.started
        eta = "?"
        if self.durations and self.running:
            eta = duration(self._typical_trials_s(queued))
        elif (bound := self._whole_budgets_s(queued)) is not None:
            eta = "≤" + duration(bound)
        parts = [f"queued {queued}", f"running {len(self.running)}"]
        parts += [f"{k} {outcomes[k]}" for k in ("grokked", "censored", "diverged", "failed") if outcomes[k]]
        if previously_done > 0:
            parts.append(f"done before resume {previously_done}")
        line = f"[{duration(elapsed)}] " + "  ".join(parts) + f"  ETA {eta}"
        if self.live:
            sys.stderr.write("\r\033[K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def _typical_trials_s(self, queued: int) -> float:
        """Seconds left if every trial takes as long as the median finished one; a running trial already past
        the median is given what its budget leaves at its pace."""
        now, typical = time.monotonic(), median(self.durations)
        seconds_left = queued * typical
        for trial_id in self.running:
            ran = now - self.trial_started.get(trial_id, now)
            seconds_left += typical - ran if ran < typical else self._budget_left(trial_id, now)[0]
        return seconds_left / len(self.running)

    def _whole_budgets_s(self, queued: int) -> float | None:
        """Seconds until every trial has trained its whole budget, at the pace of the running trials: the ETA
        before any trial has finished, and an upper bound, since a trial stops when it groks."""
        now = time.monotonic()
        known = [left for left in (self._budget_left(t, now) for t in self.running) if left[1] > 0]
        if not known:
            return None
        pace, budget = median(pace for _, pace, _ in known), median(budget for _, _, budget in known)
        return (sum(seconds for seconds, _, _ in known) + queued * budget / pace) / len(self.running)

    def _budget_left(self, trial_id: str, now: float) -> tuple[float, float, int]:
        """(seconds its budget leaves, epochs per second, budget) of a running trial from its reports; a pace of
        0 when it has not reported progress yet."""
        if trial_id not in self.position:
            return 0.0, 0.0, 0
        (t0, e0), (t, epoch, budget) = self.pace_from[trial_id], self.position[trial_id]
        if epoch <= e0 or t <= t0:
            return 0.0, 0.0, budget
        pace = (epoch - e0) / (t - t0)
        return max((budget - epoch) / pace - (now - t), 0.0), pace, budget

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.draw(trials)
        if self.live:
            sys.stderr.write("\n")


def summary_table(summaries: list[dict[str, Any]]) -> str:
    """Per method and loss: how many grokked, and median steps and seconds to grok among those that did."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for s in summaries:
        groups[(s["method"], s["loss"], s["lam"], s["init_scale"])].append(s)
    header = f"{'method':<12}{'loss':<6}{'λ':>9}{'init':>6}{'grokked':>9}{'median steps':>14}{'median s':>10}  other"
    lines = [header, "-" * len(header)]
    for (method, loss, lam, init), runs in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        grokked = [r for r in runs if r["status"] == "grokked"]  # failed trials show under "other"
        other = Counter(r["status"] for r in runs if r["status"] != "grokked")
        steps = f"{median(r['steps_to_grok'] for r in grokked):.0f}" if grokked else "—"
        secs = f"{median(r['time_to_grok_s'] for r in grokked):.1f}" if grokked else "—"
        lines.append(
            f"{method:<12}{loss:<6}{lam:>9.2g}{init:>6g}{f'{len(grokked)}/{len(runs)}':>9}{steps:>14}{secs:>10}  "
            + ", ".join(f"{n} {k}" for k, n in sorted(other.items()))
        )
    return "\n".join(lines)
