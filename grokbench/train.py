"""One grokking trial: train one model with one method until it groks, diverges or runs out of epochs.

The loop names no task and no method: the task supplies data and model, the method its hooks. Metrics leave
through a callback at each evaluation, which is also where a caller may save the trial's state; restoring
that state continues the run exactly (same parameters, same random draws, same clock) on the same kind of
device.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import torch

from grokbench.config import TrialConfig, resolve
from grokbench.events import GrokEvents, Milestone
from grokbench.geometry import geometry
from grokbench.losses import LOSSES, accuracy
from grokbench.methods import METHODS
from grokbench.tasks import TASKS, TaskData

ROBUSTNESS_SEED = 0  # the perturbed test set is drawn once, the same for every trial


@dataclass(frozen=True)
class Evaluation:
    """What the callback receives at each evaluation."""

    step: int
    epoch: int
    train_time_s: float
    metrics: dict[str, float]


Callback = Callable[[Evaluation, "Trial"], None]


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from grokbench.config import ConfigError

        raise ConfigError("device", "cuda was asked for but torch sees no CUDA device; use --device cpu or auto")
    return torch.device(name)


def make_optimizer(cfg: TrialConfig, params: list[torch.Tensor], device: torch.device) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    # the fused kernel does AdamW's element-wise work in one pass over the parameters
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Trial:
    def __init__(self, cfg: TrialConfig):
        self._wall_start = time.perf_counter()
        self.cfg = cfg = resolve(cfg)
        self.task = task = TASKS[cfg.task]
        self.device = device = pick_device(cfg.device)
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)

        torch.manual_seed(cfg.seed)
        self.model = task.build_model(cfg).to(device)  # built on the CPU: the same weights on every device
        self.params = list(self.model.parameters())
        self.optimizer = make_optimizer(cfg, self.params, device)
        self.generator = torch.Generator(device).manual_seed(cfg.seed)
        self.method = METHODS[cfg.method](cfg, self.generator)
        self.loss_fn = LOSSES[cfg.loss]

        data = task.load_data(cfg)
        self.data = TaskData(*(t.to(device) for t in (data.x_train, data.y_train, data.x_test, data.y_test)))
        self.batches = [
            (self.data.x_train[i : i + cfg.batch_size], self.data.y_train[i : i + cfg.batch_size])
            for i in range(0, len(self.data.x_train), cfg.batch_size)
        ]
        # robustness: accuracy on the first probe_size test points under a fixed draw of the task's perturbation
        noisy_test = task.perturb(data.x_test[: cfg.probe_size], cfg.noise_std,
                                  torch.Generator().manual_seed(ROBUSTNESS_SEED))
        # train, test and perturbed test go through the network in one batched pass at each evaluation
        self.eval_inputs = torch.cat([data.x_train, data.x_test, noisy_test]).to(device)
        self.probe = self.data.x_train[: cfg.probe_size]

        self.step = 0
        self.epoch = 0
        self.train_time_s = 0.0
        self.events = GrokEvents(task.grok_threshold)
        self.status = "running"
        self.last_metrics: dict[str, float] = {}
        self.resumed_from_step: int | None = None  # set when this process continued a saved trial
        self._loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self._loss_count = 0

    # ---- training -------------------------------------------------------------------------------------------

    def train_epoch(self) -> None:
        self.method.on_epoch_start(self.model, self.data)
        for x, y in self.batches:
            loss = self.method.objective(self.model, x, y, self.loss_fn)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward(inputs=self.params)  # `inputs`: no gradient for an input that needed one for a penalty
            self.method.on_gradients([p.grad for p in self.params])
            self.optimizer.step()
            self._loss_sum += loss.detach()
            self._loss_count += 1
            self.step += 1
        self.epoch += 1

    def train_epochs(self, n: int) -> None:
        """Train n epochs, adding their wall-clock seconds (updates only) to the trial's training time."""
        synchronize(self.device)
        start = time.perf_counter()
        for _ in range(n):
            self.train_epoch()
        synchronize(self.device)
        self.train_time_s += time.perf_counter() - start

    # ---- evaluation -----------------------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        n_train, n_test = len(self.data.x_train), len(self.data.x_test)
        out = self.model(self.eval_inputs)
        train_out, test_out, noisy_out = out[:n_train], out[n_train : n_train + n_test], out[n_train + n_test :]
        y_train, y_test = self.data.y_train, self.data.y_test
        figures = {
            "train_acc": accuracy(train_out, y_train),
            "test_acc": accuracy(test_out, y_test),
            "train_loss": self.loss_fn(train_out, y_train),
            "test_loss": self.loss_fn(test_out, y_test),
            "noisy_test_acc": accuracy(noisy_out, y_test[: len(noisy_out)]),
        }
        if self._loss_count:
            figures["train_objective"] = self._loss_sum / self._loss_count
        self._loss_sum.zero_()
        self._loss_count = 0
        finite = torch.isfinite(out).all() & torch.isfinite(torch.stack(list(figures.values()))).all()
        if not finite:  # a diverged network: its geometry is undefined (and the eigen-solver would raise)
            return {k: float(v) for k, v in figures.items()}
        figures.update(geometry(self.model, self.probe))
        values = torch.stack([v.to(torch.float64) for v in figures.values()]).tolist()  # one host transfer
        return dict(zip(figures, values))

    def _record(self, callback: Callback | None) -> None:
        metrics = self.evaluate()
        self.last_metrics = metrics
        if not all(math.isfinite(v) for v in metrics.values()):
            self.status = "diverged"
        else:
            at = Milestone(self.step, self.epoch, self.train_time_s)
            self.events.update(at, metrics["train_acc"], metrics["test_acc"])
        if callback is not None:
            callback(Evaluation(self.step, self.epoch, self.train_time_s, metrics), self)

    # ---- the run --------------------------------------------------------------------------------------------

    def last_epoch(self) -> int:
        """The epoch the run ends at if nothing else stops it first."""
        if self.events.grokked is not None:
            return min(self.cfg.max_epochs, self.events.grokked.epoch + self.cfg.epochs_after_grok)
        return self.cfg.max_epochs

    @property
    def finished(self) -> bool:
        return self.status == "diverged" or self.epoch >= self.last_epoch()

    def run(self, callback: Callback | None = None) -> dict[str, Any]:
        """Train to the end (or continue a restored trial) and return the summary."""
        if not self.last_metrics:
            self._record(callback)  # the state at initialisation
        while not self.finished:
            to_next_eval = self.cfg.eval_every - self.epoch % self.cfg.eval_every
            self.train_epochs(min(to_next_eval, self.last_epoch() - self.epoch))
            self._record(callback)
        if self.status == "running":
            self.status = "grokked" if self.events.grokked is not None else "censored"
        return self.summary()

    def summary(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "task": cfg.task,
            "method": cfg.method,
            "loss": cfg.loss,
            "lam": cfg.lam,
            "init_scale": cfg.init_scale,
            "seed": cfg.seed,
            "status": self.status,
            **self.events.summary(),
            "steps": self.step,
            "epochs": self.epoch,
            "train_time_s": self.train_time_s,
            "wall_s": time.perf_counter() - self._wall_start,  # this process: set-up, evaluation, callbacks too
            "final_train_acc": self._final("train_acc"),
            "final_test_acc": self._final("test_acc"),
            "final_noisy_test_acc": self._final("noisy_test_acc"),
            "resumed_from_step": self.resumed_from_step,
        }

    def _final(self, metric: str) -> float | None:
        value = self.last_metrics.get(metric)
        return value if value is not None and math.isfinite(value) and self.status != "diverged" else None

    # ---- save and restore -----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state(), "generator": self.generator.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "config": self.cfg.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "method": self.method.state_dict(),
            "rng": rng,
            "step": self.step,
            "epoch": self.epoch,
            "train_time_s": self.train_time_s,
            "events": self.events.state_dict(),
            "status": self.status,
            "last_metrics": self.last_metrics,
        }

    @classmethod
    def restore(cls, state: dict[str, Any], **overrides: Any) -> Trial:
        """Rebuild a trial from `state_dict()`; `overrides` may change run settings such as device or threads."""
        state = copy.deepcopy(state)  # the trial trains in place: the state it came from must stay as it was
        trial = cls(TrialConfig(**{**state["config"], **overrides}))
        trial.model.load_state_dict(state["model"])
        trial.optimizer.load_state_dict(state["optimizer"])
        trial.method.load_state_dict(_to_device(state["method"], trial.device))
        torch.set_rng_state(state["rng"]["torch"])
        trial._restore_generator(state["rng"]["generator"], state["step"])
        if "cuda" in state["rng"] and trial.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], trial.device)
        trial.step, trial.epoch = state["step"], state["epoch"]
        trial.train_time_s = state["train_time_s"]
        trial.events = GrokEvents.from_state(state["events"])
        trial.status, trial.last_metrics = state["status"], state["last_metrics"]
        trial.resumed_from_step = trial.step
        return trial

    def _restore_generator(self, saved: torch.Tensor, step: int) -> None:
        """Continue the method's random stream; a stream saved on another kind of device cannot continue here.

        CPU and CUDA generators keep different states (Mersenne Twister vs Philox), so a trial moved between them
        draws from a fresh stream seeded by (seed, step): it continues reproducibly, but not bit for bit as it
        would have on the device it left.
        """
        if saved.numel() == self.generator.get_state().numel():
            self.generator.set_state(saved)
            return
        self.generator.manual_seed((self.cfg.seed * 2**32 + step) % 2**63)
        warnings.warn(
            f"this trial's checkpoint was written on another kind of device than {self.device.type}: any random "
            f"draws continue from a new stream seeded by (seed, step {step}), so it may not match a run that "
            "stayed on one device", stacklevel=3,
        )


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_device(v, device) for v in value]
    return value
