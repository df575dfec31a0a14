"""The sweep's terminal: one live status line instead of Ray's tables, and the closing summary table."""

from __future__ import annotations

import heapq
import sys
import time
from collections import Counter, defaultdict
from statistics import median
from typing import Any

from ray import tune

from grokbench.progress import duration

REDRAW_S = 1.0
DONE = ("TERMINATED", "ERROR")  # Tune's states of a trial that has ended
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
        self.pace_from: dict[str, tuple[float, int]] = {}  # trial id → (time, epoch) this driver's pace counts from
        self.position: dict[str, tuple[float, int]] = {}  # trial id → (time, epoch) at its last report
        self.budget: dict[str, int] = {}  # trial id → its epoch budget
        self.slots = 1  # the most trials seen running at once: how many run side by side
        self.last_draw = 0.0
        self.live = sys.stderr.isatty()
        self.states: dict[str, str] = {}  # every trial seen, across the sweep's Tune experiments
        # each trial's status when this driver first saw it: finished already means finished before a --resume
        self.first_seen: dict[str, str] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"total": self.total}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.total = state["total"]
        self._reset()

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        self._see(trials)

    def _see(self, trials: list) -> None:
        for t in trials:
            self.first_seen.setdefault(t.trial_id, t.status)
            self.states[t.trial_id] = t.status

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.add(trial.trial_id)
        self.slots = max(self.slots, len(self.running))
        self.budget[trial.trial_id] = trial.config["trial"]["config"]["max_epochs"]
        if trial.trial_id not in self.trial_started and trial.checkpoint is not None:
            self.resumed.add(trial.trial_id)
        self.trial_started.setdefault(trial.trial_id, time.monotonic())

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if result.get("curve"):
            now, epoch = time.monotonic(), result["curve"][-1]["epoch"]
            self.pace_from.setdefault(trial.trial_id, self._pace_origin(trial.trial_id, result, now, epoch))
            self.position[trial.trial_id] = (now, epoch)
        if "summary" in result and trial.trial_id not in self.outcome:
            self.outcome[trial.trial_id] = result["summary"]["status"]
            if trial.trial_id not in self.resumed:
                self.durations.append(time.monotonic() - self.trial_started.get(trial.trial_id, self.started))

    def _pace_origin(self, trial_id: str, result: dict, now: float, epoch: int) -> tuple[float, int]:
        """Where a trial's pace counts from: when this driver started it, at the epoch it began at (a continued or
        restored trial begins where it stopped, not at 0); without that, its first report."""
        if "start_epoch" not in result:
            return now, epoch
        return self.trial_started.get(trial_id, now), result["start_epoch"]

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
        self._see(trials)
        # finished before a --resume: already so when first seen, and never started by this driver (a trial that
        # Tune ends unstarted after Ctrl-C was not)
        previously_done = sum(
            1
            for trial_id, status in self.states.items()
            if status in DONE and self.first_seen[trial_id] in DONE and trial_id not in self.trial_started
        )
        outcomes = Counter(self.outcome.values())
        finished = previously_done + len(self.outcome)
        queued = max(self.total - len(self.running) - finished, 0)
        elapsed = time.monotonic() - self.started
        parts = [f"queued {queued}", f"running {len(self.running)}"]
        parts += [f"{k} {outcomes[k]}" for k in ("grokked", "censored", "diverged", "failed") if outcomes[k]]
        if previously_done > 0:
            parts.append(f"done before resume {previously_done}")
        line = f"[{duration(elapsed)}] " + "  ".join([*parts, self._eta(queued)])
        if self.live:
            sys.stderr.write("\r\033[K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def _eta(self, queued: int) -> str:
        """'ETA 1:05' once trials have finished, 'ETA ≤2:10' (whole budgets) before, 'done' when none is left."""
        if not queued and not self.running:
            return "done"
        if self.durations and self.running:
            return f"ETA {duration(self._typical_finish_s(queued))}"
        if (bound := self._whole_budgets_finish_s(queued)) is not None:
            return f"ETA ≤{duration(bound)}"
        return "ETA ?"

    def _typical_finish_s(self, queued: int) -> float:
        """When the last trial ends if trials last as long as finished ones did: a running trial is given the median
        of what finished trials that ran longer had left at its age (at most what its budget leaves), each queued
        trial the median finished trial's time."""
        now = time.monotonic()
        left = []
        for trial_id in self.running:
            age = now - self.trial_started[trial_id]
            budget_left = self._budget_left_s(trial_id, now)
            longer = [d - age for d in self.durations if d > age]
            guess = median(longer) if longer else budget_left or 0.0
            left.append(guess if budget_left is None else min(guess, budget_left))
        return self._finish_s(left, queued, median(self.durations))

    def _whole_budgets_finish_s(self, queued: int) -> float | None:
        """When the last trial ends if every trial trains its whole budget at the slowest running trial's pace: the
        ETA before any trial has finished, an upper bound at that pace, since a trial stops when it groks."""
        paces = [pace for t in self.running if (pace := self._pace(t)) is not None]
        if not paces:
            return None
        now, slowest = time.monotonic(), min(paces)
        left = [self._budget_left_s(t, now, slowest) for t in self.running]
        return self._finish_s(left, queued, max(self.budget.values()) / slowest)

    def _finish_s(self, left: list[float], queued: int, per_queued_trial: float) -> float:
        """The running trials' seconds left, then each queued trial in the first of `slots` to free up."""
        free_at = sorted(left) + [0.0] * max(self.slots - len(left), 0)
        heapq.heapify(free_at)
        for _ in range(queued):
            heapq.heappush(free_at, heapq.heappop(free_at) + per_queued_trial)
        return max(free_at)

    def _pace(self, trial_id: str) -> float | None:
        """Epochs per second since its pace origin (`_pace_origin`); None until it has reported progress."""
        if trial_id not in self.position or trial_id not in self.pace_from:
            return None
        (t0, e0), (t, epoch) = self.pace_from[trial_id], self.position[trial_id]
        return (epoch - e0) / (t - t0) if epoch > e0 and t > t0 else None

    def _budget_left_s(self, trial_id: str, now: float, default_pace: float | None = None) -> float | None:
        """Seconds until a running trial has trained its whole budget, at its own pace (else `default_pace`)."""
        pace = self._pace(trial_id) or default_pace
        if pace is None:
            return None
        t, epoch = self.position.get(trial_id, (now, 0))
        return max((self.budget[trial_id] - epoch) / pace - (now - t), 0.0)

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
