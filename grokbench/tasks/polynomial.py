"""Polynomial regression, lazy to rich (Kumar, Bordelon, Gershman, Pehlevan 2024, arXiv
2310.06110): a two-layer network that starts lazy fits the training set with its initial kernel first and learns the
features that generalise only later; the output scale α sets how lazy it starts.

By default, the authors' Fig. 1 setting: x ~ N(0, I/D), y = (β·x)²/2 with β ~ N(0, I_D), all from a fixed data
seed. The model is f(x) = α·mean_i φ(w_i·x) − the same with the initial weights, φ(h) = h + (ε/2)h², first-layer
weights w_i ~ N(0, I_D) from the trial's seed, unit readouts that are not trained; its output at initialisation is
0, so the loss at initialisation is mean(y²) of each set, and the criterion reads the losses relative to it. Full-
batch gradient descent with η = N/α², no weight decay, MSE, float64. The kernel diagnostics use the network's NTK
in closed form: K(x, x') = (α/N)² Σ_i φ'(w_i·x) φ'(w_i·x') (x·x').

The preset `kumar_fig3a` is the notebook cell of their α sweep (Fig. 3a), checked against it line by line:

| the notebook cell (Fig. 3a) | setting |
|---|---|
| x ~ N(0, I_D), not scaled by 1/√D; h = w·x/√D | `input_scaling: preactivation` |
| y = (β·x/√D)², no ½ (E[y²] = 3) | `target: square` |
| ε = 0.25 (φ's default; the cell passes none) | `epsilon: 0.25` |
| P = 450 (test 1 000, D = 100, N = 500 as Fig. 1) | `train_size: 450` (the rest at their defaults) |
| the centred loss divided by α² | `loss_scaling: alpha_sq` (the logged losses stay the plain centred MSE) |
| constant η = 0.5·N | `lr_rule: n`, `lr_factor: 0.5` |
| 60 000 epochs | `max_epochs: 60000` |
| readouts not used, f = α·mean_i φ(h_i) | the model (no readouts) |

Its σ sweep (w ~ σ·N(0, I), η = 0.5·N/σ²) is `init_scale: σ` with `lr_factor: 0.5/σ²`. The preset `kumar_fig3e`
is their phase diagram's cell: the Fig. 1 setting at η = 20·N/α² (`lr_factor: 20`), evaluated every 50 epochs,
stopped by their rule (`stop_rule: converged`, see `EpochWatch`) or at 110 000 epochs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from grokbench.config import TrialConfig
from grokbench.evaluation import Evaluator
from grokbench.events import Criterion, LossCriterion
from grokbench.kernel import kernel_alignment, kernel_regression_test_loss, ntk_distance
from grokbench.losses import LossFn, mse
from grokbench.settings import ConfigError, Settings, non_negative, one_of, positive, setting
from grokbench.tasks.base import Presentation, Task, TaskData

INPUT_SCALINGS = ("input", "preactivation")
TARGETS = ("half_square", "square")
LOSS_SCALINGS = ("none", "alpha_sq")
LR_RULES = ("n_over_alpha_sq", "n")
STOP_RULES = ("none", "converged")
DATA_DRAWS = ("fixed", "per_seed")
# a per-seed data draw's stream starts this far from the trial's seed: torch's global stream of seed s (the weights)
# and a generator of seed s (the data) are near copies, which put one unit's w_i close to β (|cos| 0.9 at s = 0)
DATA_STREAM_OFFSET = 0x5EED_DA7A
NOT_YET = -1  # an epoch the watch has not seen happen (its metrics must stay finite: the loop reads NaN as divergence)


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
    # added for Kumar et al.'s Fig. 3a and 3e cells; each neutral value is what every trial did before
    data_draw: str = setting(
        "fixed",
        "fixed (β and the inputs from data_seed) | per_seed (from data_seed + the trial's seed, on a stream apart "
        "from the weights': each seed its own draw of data and weights)",
        neutral="fixed",
    )
    input_scaling: str = setting(
        "input",
        "where the 1/√D goes: input (x ~ N(0, I/D), h = w·x; Fig. 1) | preactivation (x ~ N(0, I), h = w·x/√D; "
        "Fig. 3a)",
        neutral="input",
    )
    target: str = setting(
        "half_square",
        "half_square (y = (β·u)²/2; Fig. 1) | square (y = (β·u)²; Fig. 3a), u = the input as the first layer sees it",
        neutral="half_square",
    )
    loss_scaling: str = setting(
        "none",
        "none | alpha_sq: the trained centred loss divided by α² (Fig. 3a; the logged losses stay the plain MSE)",
        neutral="none",
    )
    lr_rule: str = setting(
        "n_over_alpha_sq",
        "the learning rate when --lr is not given: n_over_alpha_sq (lr_factor·N/α²; Fig. 1, 3e) | n (lr_factor·N; "
        "Fig. 3a)",
        neutral="n_over_alpha_sq",
    )
    lr_factor: float = setting(
        1.0, "the constant of lr_rule (Fig. 3a: 0.5, or 0.5/σ² in its σ sweep; Fig. 3e: 20)", neutral=1.0
    )
    stop_rule: str = setting(
        "none",
        "none | converged: every epoch, watch both MSEs and stop once they changed by < converge_tolerance over "
        "converge_window epochs with the test MSE below its initial value (Kumar et al.'s Fig. 3e); full-batch "
        "baseline only",
        neutral="none",
    )
    converge_tolerance: float = setting(
        1e-5, "stop_rule converged: the largest change that counts as none", neutral=1e-5
    )
    converge_window: int = setting(
        5, "stop_rule converged: the newest of this many epochs' MSEs against the oldest", neutral=5
    )
    crossing_mse: float = setting(
        0.1,
        "stop_rule converged: report the first epochs the train and the test MSE fall below this (absolute)",
        neutral=0.1,
    )

    def check(self) -> None:
        for name in ("dim", "train_size", "test_size", "width", "alpha", "lr_factor", "converge_tolerance"):
            positive(name, getattr(self, name))
        positive("crossing_mse", self.crossing_mse)
        non_negative("epsilon", self.epsilon)
        non_negative("data_seed", self.data_seed)
        for name, allowed in (
            ("input_scaling", INPUT_SCALINGS),
            ("target", TARGETS),
            ("loss_scaling", LOSS_SCALINGS),
            ("lr_rule", LR_RULES),
            ("stop_rule", STOP_RULES),
            ("data_draw", DATA_DRAWS),
        ):
            one_of(name, getattr(self, name), allowed)
        if self.converge_window < 2:
            raise ConfigError(
                "converge_window", f"must be at least 2 (two epochs to compare), got {self.converge_window}"
            )
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

    @property
    def input_scale(self) -> float:
        """The factor the first layer applies to its input: 1/√D where the inputs are not scaled."""
        return self.dim**-0.5 if self.input_scaling == "preactivation" else 1.0


class CentredTwoLayer(nn.Module):
    """f(x) − f₀(x) with f(x) = α·mean_i φ(w_i·cx) (c: the input scale, 1 or 1/√D); the initial weights are kept
    as a buffer (saved with the model), so the centring holds for any input, as the methods' input Jacobians need.
    The initial output of the last input that needs no gradient is kept: full-batch training passes the same tensor
    every epoch, and recomputing it would cost a third of each update. With a `watch`, each training forward also
    hands its output to it (see `EpochWatch`)."""

    output_layer = None  # the output is a fixed mean over the units: the trained weights are a hidden layer

    def __init__(self, weight: torch.Tensor, alpha: float, epsilon: float, input_scale: float = 1.0):
        super().__init__()
        self.alpha, self.epsilon, self.input_scale = alpha, epsilon, input_scale
        self.weight = nn.Parameter(weight)
        self.register_buffer("initial_weight", weight.detach().clone())
        self.watch: EpochWatch | None = None
        self._last_input: torch.Tensor | None = None
        self._last_initial_output: torch.Tensor | None = None

    def scaled(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.input_scale == 1.0 else x * self.input_scale

    def uncentred(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        h = self.scaled(x) @ weight.T
        return self.alpha * (h + self.epsilon / 2 * h.square()).mean(dim=1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.uncentred(x, self.weight) - self.initial_output(x)
        if self.watch is not None and torch.is_grad_enabled():  # a training forward (evaluations run without grad)
            self.watch.record(out.detach(), self.weight.detach())
        return out

    def initial_output(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:  # an input Jacobian needs the initial output's gradient too
            return self.uncentred(x, self.initial_weight)
        if x is not self._last_input:
            with torch.no_grad():
                self._last_initial_output = self.uncentred(x, self.initial_weight)
            self._last_input = x
        return self._last_initial_output

    def ntk(self, x: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The tangent kernel of the trainable first layer at `weight`: with u = cx, ∂f/∂w_i = (α/N) φ'(w_i·u) u
        and φ'(h) = 1 + εh, Σ_i φ'(w_i·u) φ'(w_i·u') = N + ε(u + u')·Σ_i w_i + ε² uᵀ(WᵀW)u', which costs
        O(ND² + B²D) instead of O(B²N) for the sum over units."""
        x, x2 = self.scaled(x), self.scaled(x2)
        total, gram = weight.sum(dim=0), weight.T @ weight
        slopes = (
            len(weight)
            + self.epsilon * ((x @ total)[:, None] + (x2 @ total)[None, :])
            + self.epsilon**2 * (x @ gram @ x2.T)
        )
        return (self.alpha / len(weight)) ** 2 * slopes * (x @ x2.T)


class EpochWatch(nn.Module):
    """Kumar et al.'s Fig. 3e bookkeeping, every epoch of full-batch training, at no second forward pass over the
    training set: the train MSE is read off the training forward's output, the test MSE from the weights in
    closed form, f(x) − f₀(x) = (α/N)·(u·(s − s₀) + (ε/2)·uᵀ(G − G₀)u) with s = Σ_i w_i, G = WᵀW, u = cx, which
    costs O(ND² + TD²) against O(TND) for a forward: at D = 100, N = 500, P = 550, T = 1 000 a watched epoch took
    7.7 ms against 5.9 ms unwatched (+30 %, medians of 3 × 1 000 epochs, one thread, beside two running experiments),
    where a test forward alone costs ≈ 80 % of an update.

    The forward of update t sees the weights after t updates: epoch t. The watch records the first epoch each MSE
    falls below `threshold`, and the first epoch e > `window` at which both MSEs differ by less than `tolerance` from
    their values `window` − 1 epochs earlier with the test MSE below its initial value (the authors compare the
    newest of their last `lookback` = 5 losses with the oldest, once their list, which starts after the first
    update, holds more than 5); from then on it records nothing, as their run stops there. Its state is buffers,
    saved and restored with the model."""

    figures: ClassVar[tuple[str, ...]] = ("converged_epoch", "train_mse_below_epoch", "test_mse_below_epoch")

    def __init__(self, model: CentredTwoLayer, data: TaskData, tolerance: float, window: int, threshold: float):
        super().__init__()
        self.output_scale, self.half_epsilon = model.alpha / len(model.weight), model.epsilon / 2
        self.tolerance, self.threshold = tolerance, threshold
        w0 = model.initial_weight
        for name, value in (
            ("y_train", data.y_train),
            ("u_test", model.scaled(data.x_test)),
            ("y_test", data.y_test),
            ("initial_sum", w0.sum(dim=0)),
            ("initial_gram", w0.T @ w0),
            ("initial_test_mse", data.y_test.square().mean()),
        ):
            self.register_buffer(name, value, persistent=False)
        self.register_buffer("epoch", torch.zeros((), dtype=torch.int64))
        self.register_buffer("history", torch.zeros(2, window, dtype=data.y_train.dtype))  # train, test; oldest first
        self.register_buffer("first_below", torch.full((2,), NOT_YET, dtype=torch.int64))  # train, test
        self.register_buffer("converged_at", torch.tensor(NOT_YET, dtype=torch.int64))

    def test_mse(self, weight: torch.Tensor) -> torch.Tensor:
        gram = weight.T @ weight - self.initial_gram
        out = self.output_scale * (
            self.u_test @ (weight.sum(dim=0) - self.initial_sum)
            + self.half_epsilon * ((self.u_test @ gram) * self.u_test).sum(1)
        )
        return (out - self.y_test).square().mean()

    @torch.no_grad()
    def record(self, train_out: torch.Tensor, weight: torch.Tensor) -> None:
        """One training forward: its output on the training set, at the weights it was computed with."""
        self.observe(torch.stack([mse(train_out, self.y_train), self.test_mse(weight)]))

    def observe(self, losses: torch.Tensor) -> None:
        """The next epoch's train and test MSE; nothing once converged (the authors' run ends there)."""
        if self.converged_at >= 0:
            return
        epoch = int(self.epoch)
        self.first_below.copy_(torch.where((self.first_below < 0) & (losses < self.threshold), epoch, self.first_below))
        self.history.copy_(torch.cat([self.history[:, 1:], losses[:, None]], dim=1))
        steady = bool(((self.history[:, -1] - self.history[:, 0]).abs() < self.tolerance).all())
        if epoch > self.history.shape[1] and steady and losses[1] < self.initial_test_mse:
            self.converged_at.fill_(epoch)
        self.epoch += 1

    def metrics(self) -> dict[str, torch.Tensor]:
        """The epochs seen so far, as evaluation figures (−1: not yet); the summary carries their last values."""
        epochs = (self.converged_at, self.first_below[0], self.first_below[1])
        return {name: epoch.to(torch.float64) for name, epoch in zip(self.figures, epochs, strict=True)}


class PolynomialEvaluation:
    """Train and test loss (and relative to their values at initialisation, mean(y²)) in one pass; on the first
    `probe_size` training points the NTK's distance from its initial value, its alignment with the target and the
    first layer's relative change; and the test loss of kernel regression with the initial NTK on the whole
    training set (the lazy reference line), computed at the first evaluation and repeated as a constant; with an
    `EpochWatch`, the epochs it has seen."""

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
            **(model.watch.metrics() if model.watch is not None else {}),
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


@dataclass(frozen=True)
class ConvergingLossCriterion(LossCriterion):
    """`LossCriterion` with a further event, `converged` (the `EpochWatch` saw the stopping rule hold), that ends
    the run at the evaluation that reports it, grokked or not (`stop_event`, read by `GrokEvents.settled`)."""

    stop_event: ClassVar[str] = "converged"

    def further_events(self) -> dict[str, Any]:
        return {**super().further_events(), "converged": lambda metrics: metrics["converged_epoch"] >= 0}


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
    presets = {  # the authors' notebook cells (the table above)
        "kumar_fig3a": dict(
            train_size=450,
            epsilon=0.25,
            input_scaling="preactivation",
            target="square",
            loss_scaling="alpha_sq",
            lr_rule="n",
            lr_factor=0.5,
            max_epochs=60_000,
        ),
        "kumar_fig3e": dict(lr_factor=20.0, stop_rule="converged", max_epochs=110_000, eval_every=50),
    }
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
        *EpochWatch.figures,  # with stop_rule converged; absent (None) otherwise
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
        # full-batch gradient descent at the paper's η = N/α² (or a rule of another of their cells)
        rate = settings.lr_factor * settings.width
        return {
            **super().shared_defaults(settings),
            "batch_size": settings.train_size,
            "lr": rate / settings.alpha**2 if settings.lr_rule == "n_over_alpha_sq" else rate,
        }

    def loss_fn(self, cfg: TrialConfig) -> LossFn:
        plain = super().loss_fn(cfg)
        if cfg.task_settings.loss_scaling == "none":
            return plain
        alpha_sq = cfg.task_settings.alpha**2
        return lambda out, y: plain(out, y) / alpha_sq

    def load_data(self, cfg: TrialConfig) -> TaskData:
        s = cfg.task_settings
        stream = s.data_seed if s.data_draw == "fixed" else DATA_STREAM_OFFSET + s.data_seed + cfg.seed
        generator = torch.Generator().manual_seed(stream)
        dtype = getattr(torch, cfg.dtype)
        beta = torch.randn(s.dim, generator=generator, dtype=torch.float64)
        spread = s.dim**0.5 if s.input_scaling == "input" else 1.0  # else the first layer scales its input
        x_train, x_test = (
            torch.randn(n, s.dim, generator=generator, dtype=torch.float64) / spread
            for n in (s.train_size, s.test_size)
        )

        def target(x: torch.Tensor) -> torch.Tensor:
            projection = x @ beta if s.input_scale == 1.0 else (x @ beta) * s.input_scale  # β·u
            return projection.square() / 2 if s.target == "half_square" else projection.square()

        return TaskData(*(t.to(dtype) for t in (x_train, target(x_train), x_test, target(x_test))))

    def build_model(self, cfg: TrialConfig) -> nn.Module:
        s = cfg.task_settings
        weight = torch.randn(s.width, s.dim, dtype=getattr(torch, cfg.dtype))
        model = CentredTwoLayer(weight * cfg.init_scale, s.alpha, s.epsilon, s.input_scale)
        if s.stop_rule == "converged":
            _check_watchable(cfg)
            data = self.load_data(cfg)  # its own generator: the weights above are drawn as without a watch
            model.watch = EpochWatch(model, data, s.converge_tolerance, s.converge_window, s.crossing_mse)
        return model

    def evaluator(self, cfg: TrialConfig, data: TaskData, device: torch.device) -> Evaluator:
        return PolynomialEvaluation(data.to(device), cfg.probe_size)

    def criterion(self, cfg: TrialConfig) -> Criterion:
        s = cfg.task_settings
        kind = ConvergingLossCriterion if s.stop_rule == "converged" else LossCriterion
        return kind(s.memorise_threshold, s.grok_threshold, s.grok_strict_threshold)


def _check_watchable(cfg: TrialConfig) -> None:
    """The watch counts the training forwards as epochs: one forward on the whole training set per update."""
    if cfg.method != "baseline" or cfg.batch_size != cfg.task_settings.train_size:
        raise ConfigError(
            "stop_rule",
            f"converged is watched on full-batch baseline training (batch_size {cfg.task_settings.train_size}); "
            f"got method {cfg.method}, batch_size {cfg.batch_size}",
        )


TASK = Polynomial()
