"""One grokking trial: train one model with one method until it groks, diverges or runs out of epochs.

The loop names no task and no method: the task supplies data and model, the method its hooks. Metrics leave
through a callback at each evaluation, which is also where a caller may save the trial's state; restoring
that state continues the run exactly (same parameters, same random draws, same clock) on the same kind of
device.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from grokbench.config import ConfigError, TrialConfig
from grokbench.events import GrokEvents, Milestone
from grokbench.methods import METHODS
from grokbench.resolve import resolve, stored_config
from grokbench.tasks import TASKS

log = logging.getLogger("grokbench.train")

ORDER_SEED_OFFSET = 0x9E3779B9  # the data-order stream differs from the methods' stream of the same seed


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
        raise ConfigError("device", "cuda was asked for but torch sees no CUDA device; use --device cpu or auto")
    return torch.device(name)


def make_optimizer(cfg: TrialConfig, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    # `adam` adds weight decay to the gradient (L2), `adamw` decouples it; the fused kernels do the element-wise
    # work in one pass over the parameters
    kind = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    betas = (cfg.beta1, cfg.beta2)
    return kind(params, lr=cfg.lr, betas=betas, eps=cfg.adam_eps, weight_decay=cfg.weight_decay, fused=True)


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
        self.generator = torch.Generator(device).manual_seed(cfg.seed)
        self.order_generator = torch.Generator().manual_seed(cfg.seed + ORDER_SEED_OFFSET)
        self.method = METHODS[cfg.method](cfg, self.generator)
        self.optimizer = self.method.make_optimizer(self.model, lambda params: make_optimizer(cfg, params))
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]  # each warms up to its own
        self.method.on_start(self.model)
        self.loss_fn = task.loss_fn(cfg)

        data = task.load_data(cfg)
        self.data = data.to(device)
        self.batches = self._batches(self.data.x_train, self.data.y_train)
        self.evaluator = task.evaluator(cfg, data, device)

        self.step = 0
        self.epoch = 0
        self.train_time_s = 0.0
        self.events = GrokEvents(task.criterion(cfg))
        self.status = "running"
        self.last_metrics: dict[str, float] = {}
        self.resumed_from_step: int | None = None  # set when this process continued a saved trial
        self._loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self._loss_count = 0

    # ---- training -------------------------------------------------------------------------------------------

    def _batches(self, x: torch.Tensor, y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        size = self.cfg.batch_size
        return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]

    def epoch_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """This epoch's batches: the training set in its fixed order, or reshuffled from the data-order stream
        (the same for every method of a seed)."""
        if self.cfg.batch_order == "fixed":
            return self.batches
        order = torch.randperm(len(self.data.x_train), generator=self.order_generator)
        if self.device.type == "cuda":  # from pinned memory the copy need not wait for the device
            order = order.pin_memory().to(self.device, non_blocking=True)
        return self._batches(self.data.x_train[order], self.data.y_train[order])

    def _warm_up(self) -> None:
        """Linear warm-up: lr·min(t/W, 1) at update t, as Nanda et al. and the Grokfast authors schedule it."""
        factor = min(self.step / self.cfg.warmup_steps, 1.0)
        for group, lr in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = lr * factor

    def train_epoch(self) -> None:
        self.method.on_epoch_start(self.model, self.data)
        for x, y in self.epoch_batches():
            if self.cfg.warmup_steps and self.step <= self.cfg.warmup_steps:
                self._warm_up()
            loss = self.method.objective(self.model, x, y, self.loss_fn)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward(inputs=self.params)  # `inputs`: no gradient for an input that needed one for a penalty
            self.method.on_gradients([p.grad for p in self.params])
            self.method.before_step(self.params)
            self.optimizer.step()
            self.method.after_step(self.params)
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

    def evaluate(self) -> dict[str, float]:
        """The task's evaluation, plus the mean training objective since the last one, read in one transfer."""
        metrics = self.evaluator(self.model)
        if self._loss_count:
            metrics["train_objective"] = self._loss_sum / self._loss_count
        self._loss_sum.zero_()
        self._loss_count = 0
        values = torch.stack([v.to(torch.float64) for v in metrics.values()]).tolist()
        return dict(zip(metrics, values, strict=False))

    def _record(self, callback: Callback | None) -> None:
        metrics = self.evaluate()
        self.last_metrics = metrics
        if not all(math.isfinite(v) for v in metrics.values()):
            self.status = "diverged"
            log.warning("trial %s/%s seed %d %s", self.cfg.task, self.cfg.method, self.cfg.seed, self.divergence())
        else:
            self.events.update(Milestone(self.step, self.epoch, self.train_time_s), metrics)
        if callback is not None:
            callback(Evaluation(self.step, self.epoch, self.train_time_s, metrics), self)

    # ---- the run --------------------------------------------------------------------------------------------

    def last_epoch(self) -> int:
        """The epoch the run ends at if nothing else stops it first."""
        if self.events.settled is not None:
            return min(self.cfg.max_epochs, self.events.settled.epoch + self.cfg.epochs_after_grok)
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
            "lr": cfg.lr,  # as resolved (a task may derive it, as polynomial's N/α²)
            "init_scale": cfg.init_scale,
            "seed": cfg.seed,
            "status": self.status,
            **self.events.summary(),
            "steps": self.step,
            "epochs": self.epoch,
            "max_epochs": cfg.max_epochs,  # the budget it ran under (a continued trial's last one)
            "epochs_after_grok": cfg.epochs_after_grok,
            "train_time_s": self.train_time_s,
            "wall_s": time.perf_counter() - self._wall_start,  # this process: set-up, evaluation, callbacks too
            **{f"final_{name}": self._final(name) for name in self.task.final_metrics},
            "resumed_from_step": self.resumed_from_step,
            "divergence": self.divergence(),
        }

    def divergence(self) -> str | None:
        """Where a diverged trial's numbers stopped being finite, at which loss, and what usually causes it."""
        if self.status != "diverged":
            return None
        loss = self.last_metrics.get("train_loss", math.nan)
        broken = ", ".join(name for name, value in self.last_metrics.items() if not math.isfinite(value))
        where = f"by step {self.step} (epoch {self.epoch})" if self.step else "at initialisation"
        if not self.step:  # no update has run: the initial weights alone overflow
            cause = f"an init scale too large for this model (--init-scale {self.cfg.init_scale:g})"
        else:
            cause = f"a learning rate too large for this model's size and init scale (--lr {self.cfg.lr:g}, "
            cause += f"--init-scale {self.cfg.init_scale:g}): try a smaller one"
        return f"diverged {where} with train loss {loss:.3g} (not finite: {broken}); usually {cause}"

    def _final(self, metric: str) -> float | None:
        value = self.last_metrics.get(metric)
        return value if value is not None and math.isfinite(value) and self.status != "diverged" else None

    # ---- save and restore -----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        rng = {
            "torch": torch.get_rng_state(),
            "generator": self.generator.get_state(),
            "order": self.order_generator.get_state(),
        }
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
        """Rebuild a trial from `state_dict()`; `overrides` may change the placement (device, threads, data
        location) or the budget (max_epochs, epochs_after_grok): a finished trial given more budget goes on."""
        state = copy.deepcopy(state)  # the trial trains in place: the state it came from must stay as it was
        trial = cls(stored_config({**state["config"], **overrides}))
        trial.model.load_state_dict(state["model"])
        trial.optimizer.load_state_dict(state["optimizer"])
        trial.method.load_state_dict(_to_device(state["method"], trial.device))
        torch.set_rng_state(state["rng"]["torch"])
        trial._restore_generator(state["rng"]["generator"], state["step"])
        if "order" in state["rng"]:  # saved before batch orders were settings: the fixed order needs none
            trial.order_generator.set_state(state["rng"]["order"])
        if "cuda" in state["rng"] and trial.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], trial.device)
        trial.step, trial.epoch = state["step"], state["epoch"]
        trial.train_time_s = state["train_time_s"]
        trial.events = GrokEvents.from_state(trial.task.criterion(trial.cfg), state["events"])
        # a trial that ended grokked or censored may go on: with a larger budget, or further past grokking
        trial.status = "running" if state["status"] in ("grokked", "censored") else state["status"]
        trial.last_metrics = state["last_metrics"]
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
        log.warning(
            "this trial's checkpoint was written on another kind of device than %s: any random draws continue "
            "from a new stream seeded by (seed, step %d), so it may not match a run that stayed on one device",
            self.device.type,
            step,
        )


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_device(v, device) for v in value]
    return value
