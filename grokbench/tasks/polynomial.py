"""Polynomial regression, lazy to rich (Kumar, Bordelon, Gershman, Pehlevan; SPEC "Polynomial regression, lazy to
rich"): a two-layer network that starts lazy fits the training set with its initial kernel first and learns the
features that generalise only later; the output scale α sets how lazy it starts.

x ~ N(0, I/D), y = (β·x)²/2 with β ~ N(0, I_D), all from a fixed data seed. The model is
f(x) = α·mean_i φ(w_i·x) − the same with the initial weights, φ(h) = h + (ε/2)h², first-layer weights
w_i ~ N(0, I_D) from the trial's seed, unit readouts that are not trained; its output at initialisation is 0, so
the loss at initialisation is mean(y²) of each set, and the criterion reads the losses relative to it. Full-batch
gradient descent with η = N/α², no weight decay, MSE, float64. The kernel diagnostics use the network's NTK in
closed form: K(x, x') = (α/N)² Σ_i φ'(w_i·x) φ'(w_i·x') (x·x').
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from grokbench.config import TrialConfig
from grokbench.evaluation import Evaluator
from grokbench.events import Criterion, LossCriterion
from grokbench.kernel import kernel_alignment, kernel_regression_test_loss, ntk_distance
from grokbench.losses import mse
from grokbench.settings import ConfigError, Settings, non_negative, positive, setting
from grokbench.tasks.base import Presentation, Task, TaskData


@dataclass(frozen=True)
class PolynomialSettings(Settings):
    dim: int = setting(100, "input dimension D")
    train_size: int = setting(550, "training points P")
    test_size: int = setting(1000, "test points")
    width: int = setting(500, "hidden units N")
    alpha: float = setting(1.0, "output scale α: large starts lazy (kernel regime), small starts rich")
    epsilon: float = setting(0.02, "quadratic coefficient ε of φ(h) = h + (ε/2)h²")
    data_seed: int = setting(0, "seed of β and the train and test inputs (the trial's seed sets the weights)")
    memorise_threshold: float = setting(0.01, "memorised when train loss / its value at initialisation is below this")
    grok_threshold: float = setting(0.1, "grokked when test loss / its value at initialisation is below this")
    grok_strict_threshold: float = setting(0.05, "the stricter test threshold reported as steps_to_grok_strict")

    def check(self) -> None:
        for name in ("dim", "train_size", "test_size", "width", "alpha"):
            positive(name, getattr(self, name))
        non_negative("epsilon", self.epsilon)
        non_negative("data_seed", self.data_seed)
        for name in ("memorise_threshold", "grok_threshold", "grok_strict_threshold"):
            if not 0 < getattr(self, name) < 1:
                raise ConfigError(
                    name, f"must be between 0 and 1 (a share of the initial loss), got {getattr(self, name)}"
                )
        if self.grok_strict_threshold > self.grok_threshold:
            raise ConfigError(
                "grok_strict_threshold",
                f"must be at most grok_threshold ({self.grok_threshold}), got {self.grok_strict_threshold}",
            )


class CentredTwoLayer(nn.Module):
    """f(x) − f₀(x) with f(x) = α·mean_i φ(w_i·x); the initial weights are kept as a buffer (saved with the
    model), so the centring holds for any input, as the methods' input Jacobians need. The initial output of the
    last input that needs no gradient is kept: full-batch training passes the same tensor every epoch, and
    recomputing it would cost a third of each update."""

    output_layer = None  # the output is a fixed mean over the units: the trained weights are a hidden layer

    def __init__(self, weight: torch.Tensor, alpha: float, epsilon: float):
        super().__init__()
        self.alpha, self.epsilon = alpha, epsilon
        self.weight = nn.Parameter(weight)
        self.register_buffer("initial_weight", weight.detach().clone())
        self._last_input: torch.Tensor | None = None
        self._last_initial_output: torch.Tensor | None = None

    def uncentred(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        h = x @ weight.T
        return self.alpha * (h + self.epsilon / 2 * h.square()).mean(dim=1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.uncentred(x, self.weight) - self.initial_output(x)

    def initial_output(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:  # an input Jacobian needs the initial output's gradient too
            return self.uncentred(x, self.initial_weight)
        if x is not self._last_input:
            with torch.no_grad():
                self._last_initial_output = self.uncentred(x, self.initial_weight)
            self._last_input = x
        return self._last_initial_output

    def ntk(self, x: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The tangent kernel of the trainable first layer at `weight`: with ∂f/∂w_i = (α/N) φ'(w_i·x) x and
        φ'(h) = 1 + εh, Σ_i φ'(w_i·x) φ'(w_i·x') = N + ε(x + x')·Σ_i w_i + ε² xᵀ(WᵀW)x', which costs O(ND² + B²D)
        instead of O(B²N) for the sum over units."""
        total, gram = weight.sum(dim=0), weight.T @ weight
        slopes = (
            len(weight)
            + self.epsilon * ((x @ total)[:, None] + (x2 @ total)[None, :])
            + self.epsilon**2 * (x @ gram @ x2.T)
        )
        return (self.alpha / len(weight)) ** 2 * slopes * (x @ x2.T)


class PolynomialEvaluation:
    """Train and test loss (and relative to their values at initialisation, mean(y²)) in one pass; on the first
    `probe_size` training points the NTK's distance from its initial value, its alignment with the target and the
    first layer's relative change; and the test loss of kernel regression with the initial NTK on the whole
    training set (the lazy reference line), computed at the first evaluation and repeated as a constant."""

    def __init__(self, data: TaskData, probe_size: int):
        self.data = data
        self.inputs = torch.cat([data.x_train, data.x_test])
        self.n_train = len(data.x_train)
        self.initial_train_loss = data.y_train.square().mean()
        self.initial_test_loss = data.y_test.square().mean()
        self.probe, self.y_probe = data.x_train[:probe_size], data.y_train[:probe_size]
        self.initial_kernel: torch.Tensor | None = None
        self.initial_out: torch.Tensor | None = None
        self.lazy_test_loss: torch.Tensor | None = None

    @torch.no_grad()
    def __call__(self, model: CentredTwoLayer) -> dict[str, torch.Tensor]:
        if self.initial_kernel is None:
            self._measure_at_initialisation(model)
        out = model.uncentred(self.inputs, model.weight) - self.initial_out  # not model(): keeps its cache
        train_loss, test_loss = mse(out[: self.n_train], self.data.y_train), mse(out[self.n_train :], self.data.y_test)
        kernel = model.ntk(self.probe, self.probe, model.weight)
        return {
            "train_loss": train_loss,
            "test_loss": test_loss,
            "train_loss_rel": train_loss / self.initial_train_loss,
            "test_loss_rel": test_loss / self.initial_test_loss,
            "ntk_distance": ntk_distance(self.initial_kernel, kernel),
            "kernel_alignment": kernel_alignment(kernel, self.y_probe),
            "weight_change": (model.weight - model.initial_weight).norm() / model.initial_weight.norm(),
            "kernel_regression_test_loss": self.lazy_test_loss,
            "kernel_regression_test_loss_rel": self.lazy_test_loss / self.initial_test_loss,
        }

    def _measure_at_initialisation(self, model: CentredTwoLayer) -> None:
        w0, x_train = model.initial_weight, self.data.x_train
        self.initial_kernel = model.ntk(self.probe, self.probe, w0)
        self.initial_out = model.uncentred(self.inputs, w0)
        self.lazy_test_loss = kernel_regression_test_loss(
            model.ntk(x_train, x_train, w0),
            model.ntk(self.data.x_test, x_train, w0),
            self.data.y_train,
            self.data.y_test,
        )


class Polynomial(Task):
    name = "polynomial"
    description = (
        "y = (β·x)²/2 in D dimensions on a centred two-layer net, output scale α (Kumar et al.; defaults: "
        "D = 100, width 500)"
    )
    Settings = PolynomialSettings
    defaults = dict(
        loss="mse",
        init_scale=1.0,
        optimizer="sgd",
        weight_decay=0.0,
        max_epochs=100_000,
        eval_every=10,
        dtype="float64",
    )
    losses = ("mse",)
    # no accuracy: adversarial training's noise follows the train accuracy, undefined for a regression
    capabilities = frozenset({"input_noise", "input_jacobian"})
    final_metrics = (
        "train_loss",
        "test_loss",
        "train_loss_rel",
        "test_loss_rel",
        "ntk_distance",
        "kernel_alignment",
        "weight_change",
        "kernel_regression_test_loss",
        "kernel_regression_test_loss_rel",
    )
    min_probe_size = 2  # the centred kernel alignment of a single point is 0/0
    progress_figures = (
        ("train", "train_loss_rel", ".3g"),
        ("test", "test_loss_rel", ".3g"),
        ("ntk distance", "ntk_distance", ".3g"),
    )
    # its relative losses on log axes beside the kernel-regression line, and the kernel diagnostics; a learning rate
    # off N/α² names a row of its own (a baseline at Grokfast's effective step, the control of its gain)
    presentation = Presentation(
        train="train_loss_rel",
        test="test_loss_rel",
        label="loss / its initial value",
        log=True,
        reference="kernel_regression_test_loss_rel",
        title="Kernel diagnostics",
        tabled=("ntk_distance", "kernel_alignment", "weight_change"),
        plotted=("ntk_distance", "kernel_alignment", "weight_change"),
        variants=("lr",),
        gap=("train_loss", "test_loss", 0.1),
    )  # Kumar et al.'s Fig. 3e: train and test MSE below 0.1

    def shared_defaults(self, settings: PolynomialSettings) -> dict[str, Any]:
        # full-batch gradient descent at the paper's η = N/α²
        return {
            **super().shared_defaults(settings),
            "batch_size": settings.train_size,
            "lr": settings.width / settings.alpha**2,
        }

    def load_data(self, cfg: TrialConfig) -> TaskData:
        s = cfg.task_settings
        generator = torch.Generator().manual_seed(s.data_seed)
        dtype = getattr(torch, cfg.dtype)
        beta = torch.randn(s.dim, generator=generator, dtype=torch.float64)
        x_train, x_test = (
            torch.randn(n, s.dim, generator=generator, dtype=torch.float64) / s.dim**0.5
            for n in (s.train_size, s.test_size)
        )
        target = lambda x: (x @ beta).square() / 2  # noqa: E731
        return TaskData(*(t.to(dtype) for t in (x_train, target(x_train), x_test, target(x_test))))

    def build_model(self, cfg: TrialConfig) -> nn.Module:
        s = cfg.task_settings
        weight = torch.randn(s.width, s.dim, dtype=getattr(torch, cfg.dtype))
        return CentredTwoLayer(weight * cfg.init_scale, s.alpha, s.epsilon)

    def evaluator(self, cfg: TrialConfig, data: TaskData, device: torch.device) -> Evaluator:
        return PolynomialEvaluation(data.to(device), cfg.probe_size)

    def criterion(self, cfg: TrialConfig) -> Criterion:
        s = cfg.task_settings
        return LossCriterion(s.memorise_threshold, s.grok_threshold, s.grok_strict_threshold)


TASK = Polynomial()
