"""The Ray Tune side of a trial, kept thin: run the engine, report each evaluation, checkpoint every N epochs.

Nothing here talks to MLflow: results travel to the driver through `tune.report`, and the driver logs them.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from grokbench.config import BUDGET, PLACEMENT
from grokbench.machine import this_machine
from grokbench.resolve import config_from
from grokbench.sweep.keys import trial_key
from grokbench.sweep.mlflow_store import dataset_input
from grokbench.train import Evaluation, Trial

STATE_FILE = "trial.pt"
CHECKPOINT_DIR = re.compile(r"checkpoint_\d+")  # Tune's name for each checkpoint in a trial's directory
OBJECTIVE = "objective"
REPORT_EVERY_S = 10.0


def _load_or_start(config: dict[str, Any]) -> Trial:
    """This attempt's trial: from Tune's latest checkpoint of it (a retry, a resumed sweep), else from the final
    checkpoint of the stored trial it continues (a larger budget), else new. A restored trial takes this sweep's
    budget and placement."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None and config.get("continue"):
        checkpoint = tune.Checkpoint(config["continue"]["checkpoint"])
    if checkpoint is None:  # stored=True: a sweep started by an earlier grokbench, resumed by this one
        return Trial(config_from(config["config"], stored=True))
    with existing_checkpoint(checkpoint).as_directory() as directory:
        state = torch.load(Path(directory) / STATE_FILE, map_location="cpu", weights_only=False)
    return Trial.restore(state, **{name: config["config"][name] for name in (*BUDGET, *PLACEMENT)})


def existing_checkpoint(checkpoint: tune.Checkpoint) -> tune.Checkpoint:
    """The checkpoint, or, where it is gone, the newest one beside it in the trial's directory. Tune deletes a
    trial's older checkpoints as soon as a newer one is registered, but saves the experiment state that names the
    latest only every few seconds: a driver killed between the two leaves a resumed sweep pointing at a deleted
    checkpoint, with the newer one on disk (with `keep_checkpoints: 1` that is the only one)."""
    from pyarrow.fs import FileSelector, FileType

    fs = checkpoint.filesystem
    if fs.get_file_info(f"{checkpoint.path}/{STATE_FILE}").type == FileType.File:
        return checkpoint
    parent = checkpoint.path.rstrip("/").rsplit("/", 1)[0]
    beside = sorted(
        info.path
        for info in fs.get_file_info(FileSelector(parent, allow_not_found=True))
        if info.type == FileType.Directory and CHECKPOINT_DIR.fullmatch(info.base_name)
    )
    usable = [path for path in beside if fs.get_file_info(f"{path}/{STATE_FILE}").type == FileType.File]
    return tune.Checkpoint(usable[-1], filesystem=fs) if usable else checkpoint


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


def dataset_record(trial: Trial) -> dict[str, Any]:
    """The trial's data as the driver logs it for an MLflow dataset input: the task's name, a digest of the very
    tensors it trains and tests on, the module that made them, and their sizes."""
    data = trial.data
    tensors = (data.x_train, data.y_train, data.x_test, data.y_test)
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    profile = {
        "train_rows": len(data.x_train),
        "test_rows": len(data.x_test),
        "features": int(data.x_train[0].numel()),
        "dtype": str(data.x_train.dtype).removeprefix("torch."),
    }
    return dataset_input(trial.cfg.task, digest.hexdigest()[:12], trial.task.load_data.__module__, profile)


def curve_point(ev: Evaluation) -> dict[str, Any]:
    """One evaluation as the driver logs it: its figures at its step, with its epoch and training seconds."""
    return {**ev.metrics, "step": ev.step, "epoch": ev.epoch, "train_time_s": ev.train_time_s}


class Reporter:
    """The trial callback: buffers each evaluation's metrics and hands them to Tune in batches.

    A report is a round trip to the driver, so one per evaluation would slow a trial by several percent.
    Buffered points go out every REPORT_EVERY_S seconds, with every checkpoint (so a trial restored from a
    checkpoint never lacks points before it) and with the summary at the end.
    """

    def __init__(self, config: dict[str, Any], trial: Trial):
        self.config = config
        self.last_checkpoint_epoch = trial.epoch
        self.curve: list[dict[str, Any]] = []
        self.last_flush = time.monotonic()
        self.node_id = ray.get_runtime_context().get_node_id()
        # sent once, with the attempt's first report; a continued or restored trial starts past epoch 0
        self.first_report: dict[str, Any] = {"dataset": dataset_record(trial), "start_epoch": trial.epoch}

    def __call__(self, ev: Evaluation, trial: Trial) -> None:
        self.curve.append(curve_point(ev))
        # at the first evaluation at least checkpoint_every epochs after the last checkpoint
        checkpoint_due = ev.epoch - self.last_checkpoint_epoch >= self.config["checkpoint_every"]
        if checkpoint_due or time.monotonic() - self.last_flush >= REPORT_EVERY_S:
            self.flush(trial, with_checkpoint=checkpoint_due)
        _maybe_fail(self.config, ev.epoch)

    def flush(self, trial: Trial, with_checkpoint: bool, **extra: Any) -> None:
        # a search sees the objective as it stands (a trial still running projected to its budget)
        grokked = trial.events.grokked
        result = {
            "step": trial.step,
            "steps_to_grok": grokked.step if grokked is not None else None,  # a stopper tells a miss by it
            "curve": self.curve,
            OBJECTIVE: objective(trial),
            "node_id": self.node_id,
            **extra,
        }
        result |= self.first_report
        self.first_report = {}
        _report(result, trial if with_checkpoint else None)
        if with_checkpoint:
            self.last_checkpoint_epoch = trial.epoch
        self.curve = []
        self.last_flush = time.monotonic()


def run_trial(config: dict[str, Any]) -> None:
    """Tune function trainable. `config["trial"]`: {"config": TrialConfig fields, "checkpoint_every": epochs,
    "continue": None or the stored trial it continues ({"checkpoint": its final one, "run_id": ...})}.

    Reports {"step", "steps_to_grok" (None before it groks), "curve": [metrics of each evaluation], "objective"};
    the first report of each attempt adds "dataset" (`dataset_record`) and "start_epoch" (the epoch it began
    at), the last "summary" and "machine"
    (`grokbench.machine.this_machine`: where the summary's seconds were measured)."""
    config = config["trial"]
    trial = _load_or_start(config)
    reporter = Reporter(config, trial)
    summary = trial.run(callback=reporter)
    reporter.flush(trial, with_checkpoint=True, summary=summary, machine=this_machine(trial.cfg.device))


def objective(trial: Trial) -> float:
    """What a search minimises: seconds to grok. A trial that has not grokked counts at its whole budget's
    seconds (its rate so far, extrapolated), so neither censoring nor an early divergence looks fast."""
    if trial.events.grokked is not None:
        return trial.events.grokked.time_s
    return trial.train_time_s * trial.cfg.max_epochs / max(trial.epoch, 1)
