"""The Ray Tune side of a trial, kept thin: run the engine, report each evaluation, checkpoint every N epochs.

Nothing here talks to MLflow: results travel to the driver through `tune.report`, and the driver logs them.
"""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path
from typing import Any

import torch
from ray import tune

from grokbench.config import TrialConfig
from grokbench.sweep.keys import trial_key
from grokbench.train import Evaluation, Trial

STATE_FILE = "trial.pt"
OBJECTIVE = "objective"


def _load_or_start(config: dict[str, Any]) -> Trial:
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return Trial(TrialConfig.from_dict(config["config"]))
    with checkpoint.as_directory() as directory:
        state = torch.load(Path(directory) / STATE_FILE, weights_only=False)
    return Trial.restore(state)


def _report(metrics: dict[str, Any], trial: Trial | None = None) -> None:
    """Report to Tune; with `trial`, also a checkpoint of its full state (Tune copies it to storage)."""
    if trial is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="grokbench-ckpt-") as directory:
        torch.save(trial.state_dict(), Path(directory) / STATE_FILE)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def _maybe_fail(config: dict[str, Any], epoch: int) -> None:
    """Fault injection for tests: kill this worker process once, at the given epoch."""
    fault = config.get("fault")
    if fault and epoch >= fault["kill_at_epoch"]:
        marker = Path(fault["marker_dir"]) / trial_key(config["config"])
        if not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)


def run_trial(config: dict[str, Any]) -> None:
    """Tune function trainable. `config["trial"]`: {"config": TrialConfig fields, "checkpoint_every": epochs}.

    Reports {"step", "metrics", "objective"} at each evaluation and {"step", "summary", "objective"} at the end."""
    config = config["trial"]
    trial = _load_or_start(config)
    every = config["checkpoint_every"]

    def report(ev: Evaluation, trial: Trial) -> None:
        metrics = {**ev.metrics, "epoch": ev.epoch, "train_time_s": ev.train_time_s}
        due = ev.epoch > 0 and ev.epoch % every == 0
        # a search sees the objective as it would stand if the trial ended now
        _report({"step": ev.step, "metrics": metrics, OBJECTIVE: objective(trial.summary())}, trial if due else None)
        _maybe_fail(config, ev.epoch)

    summary = trial.run(callback=report)
    _report({"step": trial.step, "summary": summary, OBJECTIVE: objective(summary)}, trial)


def objective(summary: dict[str, Any]) -> float:
    """What a search minimises: seconds to grok, a censored (or diverged) trial counted at its budget's time."""
    grokked = summary["time_to_grok_s"]
    return grokked if grokked is not None else summary["train_time_s"]
