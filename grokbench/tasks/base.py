"""What a task is: its settings, data, model, evaluation, grokking criterion and default training settings.

A task is one module defining a `Task` subclass. It owns a settings dataclass (its own flags and sweep keys), the
defaults it gives the shared settings, the losses it allows, optional presets, what it can offer the methods
(`capabilities`), and, per trial, the data, the model, the evaluator the loop calls at each evaluation and the
criterion that says when the trial memorised and grokked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from grokbench.config import TrialConfig
from grokbench.evaluation import Classification, Evaluator
from grokbench.events import AccuracyCriterion, Criterion
from grokbench.losses import LossFn, loss_for
from grokbench.settings import NoSettings, Settings

# settings of the shared training loop that a task need not name: what every task did before they existed
LOOP_DEFAULTS = {"beta1": 0.9, "beta2": 0.999, "adam_eps": 1e-8, "warmup_steps": 0, "batch_order": "fixed"}
ROBUSTNESS_SEED = 0  # the perturbed test set is drawn once, the same for every trial


class DataError(RuntimeError):
    """The task's data cannot be found or fetched; the message says where to put it."""


def data_root(cfg: TrialConfig) -> Path:
    """--data-dir, else $GROKBENCH_DATA, else a per-user cache directory."""
    if cfg.data_dir:
        return Path(cfg.data_dir).expanduser().resolve()
    if os.environ.get("GROKBENCH_DATA"):
        return Path(os.environ["GROKBENCH_DATA"]).expanduser().resolve()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "grokbench" / "data"


@dataclass(frozen=True)
class Presentation:
    """What the analysis package (its tables and figures) reads and shows of a task's trials."""

    # the train and test metrics the criterion reads, what they are on an axis, and whether they span decades
    # (losses: log axes, drawn by analysis/curve_figures.py against epochs) or are proportions (accuracies)
    train: str = "train_acc"
    test: str = "test_acc"
    label: str = "accuracy"
    log: bool = False
    reference: str | None = None  # a test figure that stays constant (a baseline predictor's), drawn as a line
    name: str = "geometry"  # of the table of `tabled` (and, for a task with accuracy, the figure of `plotted`)
    title: str = "Geometry"
    # evaluation curves tabled at the memorised and grokked moments (median over seeds), and those drawn against
    # steps (epochs, for a task without accuracy) with the moments marked
    tabled: tuple[str, ...] = ("centroid_alignment", "row_alignment_max", "row_alignment_min", "jacobian_norm")
    plotted: tuple[str, ...] = ("centroid_alignment", "jacobian_norm")
    log_steps: bool = False  # steps (and seconds) on a log axis: grokking that comes decades of updates apart
    # settings (shared or the task's) whose value, off the task's (or its preset's) default, is named in a trial's
    # row and line (a shared setting's default taken at the trial's own task settings: polynomial's lr at its α):
    # `conditions` are separate experiments, whose methods are compared with the baseline of the same
    # condition; `variants` belong to a method's arm, compared with the baseline at the default. Any other task
    # setting a sweep varies (polynomial's α) is a condition too, shown in a column of its own
    conditions: tuple[str, ...] = ()
    variants: tuple[str, ...] = ()
    # a published measure of grokking to table beside the criterion (analysis/gap.py): the epochs from the first
    # figure's first fall below the value to the second's (train figure, test figure, absolute value)
    gap: tuple[str, str, float] | None = None


@dataclass(frozen=True)
class TaskData:
    """Train and test tensors (on the CPU, in the trial's dtype); targets are class indices or ±1 scalars."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def to(self, device: torch.device) -> TaskData:
        return TaskData(*(t.to(device) for t in (self.x_train, self.y_train, self.x_test, self.y_test)))


class Task:
    """A classification task with continuous inputs; override what differs."""

    name: ClassVar[str]
    description: ClassVar[str]
    Settings: ClassVar[type[Settings]] = NoSettings
    defaults: ClassVar[dict[str, Any]]  # the shared settings' defaults on this task
    losses: ClassVar[tuple[str, ...]]
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    grok_threshold: ClassVar[float]  # grokked at the first evaluation with test accuracy strictly above this
    # what the methods may ask for: accuracy (a classification task), input_noise and input_jacobian (continuous
    # inputs, or a model over tokens that exposes its input embedding as `embed` and `from_embeddings`, so noise
    # can be added there and the network differentiated there: see `grokbench.methods.base.input_space`)
    capabilities: ClassVar[frozenset[str]] = frozenset({"accuracy", "input_noise", "input_jacobian"})
    # evaluation metrics whose last value the summary carries (as final_<name>)
    final_metrics: ClassVar[tuple[str, ...]] = ("train_acc", "test_acc", "noisy_test_acc")
    # the metrics of the live progress line: (label, evaluation metric, format)
    progress_figures: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("train", "train_acc", ".3f"),
        ("test", "test_acc", ".3f"),
        ("loss", "train_loss", ".3g"),
    )
    presentation: ClassVar[Presentation] = Presentation()
    min_probe_size: ClassVar[int] = 1  # the fewest probe points its geometry metrics are defined on

    def shared_defaults(self, settings: Settings) -> dict[str, Any]:
        return {**LOOP_DEFAULTS, **self.defaults}

    def preset_values(self, preset: str, given: dict[str, Any]) -> dict[str, Any]:
        """The settings `preset` sets for a trial given `given` (a preset's values may depend on the method)."""
        return self.presets[preset]

    def train_size(self, cfg: TrialConfig) -> int:
        return cfg.task_settings.train_size

    def load_data(self, cfg: TrialConfig) -> TaskData:
        raise NotImplementedError

    def build_model(self, cfg: TrialConfig) -> nn.Module:
        raise NotImplementedError

    def loss_fn(self, cfg: TrialConfig) -> LossFn:
        return loss_for(cfg.loss, cfg.softmax_precision)

    def perturb(self, x: torch.Tensor, size: float, generator: torch.Generator) -> torch.Tensor:
        """The robustness probe's perturbation of test inputs."""
        return gaussian_noise(x, size, generator)

    def evaluator(self, cfg: TrialConfig, data: TaskData, device: torch.device) -> Evaluator:
        """Accuracy and loss on train and test, accuracy under `perturb` of size `noise_std`, and input-space
        geometry on the first `probe_size` training points."""
        noisy_test = self.perturb(
            data.x_test[: cfg.probe_size], cfg.task_settings.noise_std, torch.Generator().manual_seed(ROBUSTNESS_SEED)
        )
        return Classification(data.to(device), self.loss_fn(cfg), noisy_test.to(device), cfg.probe_size)

    def criterion(self, cfg: TrialConfig) -> Criterion:
        return AccuracyCriterion(self.grok_threshold)


def gaussian_noise(x: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """x + std·N(0, I), drawn in float32 (several times cheaper than float64) and cast."""
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float32)
    return x + noise.to(x.dtype).mul_(std)


def scale_weights(model: nn.Module, init_scale: float) -> nn.Module:
    """Multiply every parameter by the initialisation scale α (after PyTorch's default initialisation)."""
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(init_scale)
    return model


def mlp(widths: list[int], dtype: torch.dtype, bias: bool = False) -> nn.Sequential:
    """A ReLU MLP with the given layer widths (bias-free by default), PyTorch's default initialisation, on the
    CPU."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=False)):
        if i:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(n_in, n_out, bias=bias, dtype=dtype))
    return nn.Sequential(*layers)
