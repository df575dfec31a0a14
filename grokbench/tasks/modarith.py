"""Modular arithmetic on a small transformer, the task that defines grokking for most of the field (Power et al.;
Nanda et al.'s progress measures; Grokfast): learn a ∘ b = c (mod p) from a share of all equations.

Three presets reproduce the reference set-ups: `nanda` (the default; Nanda et al. 2023, p = 113 addition, one layer,
full batch, AdamW with weight decay 1), `grokfast` (ironjr/grokfast, p = 97 multiplication, two LayerNorm layers,
Adam, batches of 512 reshuffled each epoch) and `prieto_mlp` (Prieto et al. 2025: p = 113 addition on a bias-free MLP
over one-hot a and b, full batch, AdamW whose β₂ and ε depend on the arm, as their script sets them). Loss and
accuracy are on the answer only; the Gini coefficients of the token embedding's and the unembedding's
Fourier-component norms are measured at each evaluation (`grokbench.fourier`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from grokbench.config import TrialConfig
from grokbench.evaluation import Evaluator, train_test_metrics
from grokbench.fourier import FourierGini, prime_factors
from grokbench.losses import LossFn
from grokbench.settings import ConfigError, Settings, one_of, positive, setting
from grokbench.tasks.base import Presentation, Task, TaskData, mlp, scale_weights
from grokbench.tasks.transformer import Architecture, Transformer

OPS = ("add", "sub", "mul", "div")
NONZERO_B = ("mul", "div")  # b ≠ 0: needed for div; for mul as the Grokfast authors draw it
SPLIT_SEED_OFFSET = 0x5EED  # the split's stream differs from the initialisation's stream of the same seed
EVALUATION_CHUNK = 1024  # equations per forward pass of an evaluation
ARCHITECTURES = ("transformer", "mlp")
MLP_HIDDEN = (200, 200)  # Prieto et al.'s MLP


@dataclass(frozen=True)
class ModArithSettings(Settings):
    p: int = setting(113, "the modulus, a prime ≥ 3")
    op: str = setting("add", "add | sub | mul | div: a+b, a−b, a·b, a·b⁻¹ (mod p); b ≠ 0 for mul and div")
    train_fraction: float = setting(0.3, "share of all equations trained on; the rest is the test set")
    data_seed: int | None = setting(
        None,
        "seed of the train/test split (default: the trial's seed, as the Grokfast "
        "authors; a number keeps one split across seeds)",
    )
    op_token: bool = setting(False, "inputs `a ∘ b =` (vocabulary p + 2, Grokfast) instead of `a b =` (p + 1, Nanda)")
    n_layers: int = setting(1, "transformer layers")
    d_model: int = setting(128, "width of the residual stream")
    n_heads: int = setting(4, "attention heads (d_model / n_heads each)")
    d_mlp: int = setting(512, "hidden units of each MLP")
    activation: str = setting("relu", "relu | gelu")
    layer_norm: bool = setting(False, "LayerNorm before attention and MLP and before the head (Grokfast's blocks)")
    attention_bias: bool = setting(False, "biases in the attention projections (nn.MultiheadAttention's)")
    init: str = setting(
        "nanda",
        "nanda (N(0, 1/d_model) matrices, Nanda et al.) | torch (PyTorch modules' defaults, "
        "the Grokfast authors' model)",
    )
    architecture: str = setting(
        "transformer",
        "transformer | mlp (Prieto et al.'s: one-hot a and b concatenated, hidden 200, 200, ReLU, no biases; "
        "the transformer's settings do not apply)",
        neutral="transformer",
    )
    freeze_embeddings: bool = setting(False, "do not train the token embedding (GrokAlign Fig. 9)")

    def check(self) -> None:
        if self.p < 3 or prime_factors(self.p) != {self.p}:
            factors = "" if self.p < 4 else f" (divisible by {min(prime_factors(self.p))})"
            raise ConfigError("p", f"must be a prime ≥ 3, got {self.p}{factors}")
        one_of("op", self.op, OPS)
        n = equation_count(self)
        if not 0 < self.train_fraction < 1 or int(self.train_fraction * n) in (0, n):
            raise ConfigError(
                "train_fraction",
                f"must be between 0 and 1, leaving at least one of the {n} "
                f"equations on each side of the split, got {self.train_fraction}",
            )
        if self.data_seed is not None and self.data_seed < 0:
            raise ConfigError("data_seed", f"must be >= 0, got {self.data_seed}")
        for name in ("n_layers", "d_model", "n_heads", "d_mlp"):
            positive(name, getattr(self, name))
        if self.d_model % self.n_heads:
            raise ConfigError("n_heads", f"must divide d_model ({self.d_model}), got {self.n_heads}")
        one_of("activation", self.activation, ("relu", "gelu"))
        one_of("init", self.init, ("nanda", "torch"))
        one_of("architecture", self.architecture, ARCHITECTURES)


def equation_count(settings: ModArithSettings) -> int:
    return settings.p * (settings.p - 1 if settings.op in NONZERO_B else settings.p)


def equations(settings: ModArithSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """Every equation as its input tokens (N, 3 or 4) and its answer (N,): tokens 0 … p−1 are the numbers, p is
    `=`, p + 1 the operator."""
    p = settings.p
    a, b = torch.cartesian_prod(torch.arange(p), torch.arange(1 if settings.op in NONZERO_B else 0, p)).T
    if settings.op == "div":
        inverse = torch.tensor([0] + [pow(x, p - 2, p) for x in range(1, p)])  # b⁻¹ = b^(p−2) (Fermat)
        answer = a * inverse[b] % p
    else:
        answer = {"add": a + b, "sub": a - b, "mul": a * b}[settings.op] % p
    equals = torch.full_like(a, p)
    columns = (a, torch.full_like(a, p + 1), b, equals) if settings.op_token else (a, b, equals)
    return torch.stack(columns, dim=1), answer


class OneHotMLP(nn.Module):
    """Prieto et al.'s `MLP(..., bias=False)` over the one-hot codes of a and b, concatenated. Its input embedding
    is that code (so the methods that perturb or differentiate the input work there); the rows of the first
    layer's a-block and of the output layer stand in for the token embedding and the unembedding."""

    def __init__(self, p: int, dtype: torch.dtype):
        super().__init__()
        self.p = p
        self.layers = mlp([2 * p, *MLP_HIDDEN, p], dtype)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        a, b = tokens[:, 0], tokens[:, -2]  # `a b =` or `a ∘ b =`
        return torch.cat([F.one_hot(a, self.p), F.one_hot(b, self.p)], dim=1).to(self.layers[0].weight.dtype)

    def from_embeddings(self, embedded: torch.Tensor) -> torch.Tensor:
        return self.layers(embedded)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.from_embeddings(self.embed(tokens))

    @property
    def token_embedding(self) -> torch.Tensor:
        return self.layers[0].weight[:, : self.p].T

    @property
    def unembedding(self) -> torch.Tensor:
        return self.layers[-1].weight


class ModArithEvaluation:
    """Accuracy and loss on the answer of every train and test equation in one batched pass, and the Gini
    coefficients of the token embedding's and the unembedding's Fourier-component norms."""

    def __init__(self, data: TaskData, loss_fn: LossFn, gini: FourierGini):
        self.inputs = torch.cat([data.x_train, data.x_test])
        self.n_train = len(data.x_train)
        self.y_train, self.y_test = data.y_train, data.y_test
        self.loss_fn, self.gini = loss_fn, gini

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> dict[str, torch.Tensor]:
        # in chunks that stay in cache: on one CPU core the pass over every equation takes about half as long
        out = torch.cat([model(chunk) for chunk in self.inputs.split(EVALUATION_CHUNK)])
        metrics = train_test_metrics(out[: self.n_train], out[self.n_train :], self.y_train, self.y_test, self.loss_fn)
        metrics["gini_embed"] = self.gini(model.token_embedding)
        metrics["gini_unembed"] = self.gini(model.unembedding)
        return metrics


NANDA = dict(
    p=113,
    op="add",
    train_fraction=0.3,
    op_token=False,
    n_layers=1,
    d_model=128,
    n_heads=4,
    d_mlp=512,
    activation="relu",
    layer_norm=False,
    attention_bias=False,
    init="nanda",
    softmax_precision=64,  # Nanda et al.'s `cross_entropy_high_precision`: float32 spikes the loss late in training
    optimizer="adamw",
    lr=1e-3,
    weight_decay=1.0,
    beta1=0.9,
    beta2=0.98,
    warmup_steps=10,
    batch_order="fixed",
    max_epochs=50_000,
    eval_every=50,
)
GROKFAST = dict(
    p=97,
    op="mul",
    train_fraction=0.5,
    op_token=True,
    n_layers=2,
    d_model=128,
    n_heads=4,
    d_mlp=512,
    activation="gelu",
    layer_norm=True,
    attention_bias=True,
    init="torch",
    softmax_precision=32,
    optimizer="adam",
    lr=1e-3,
    weight_decay=0.0,
    beta1=0.9,
    beta2=0.98,
    warmup_steps=10,
    batch_size=512,
    batch_order="shuffle",
    max_epochs=30_000,
    eval_every=20,
)


PRIETO_MLP = dict(
    p=113,
    op="add",
    train_fraction=0.4,
    op_token=False,
    architecture="mlp",
    init_scale=1.0,
    dtype="float32",
    softmax_precision=64,  # their control arm: softmax cross-entropy in float64
    optimizer="adamw",
    lr=0.01,
    weight_decay=0.0,
    beta1=0.9,
    warmup_steps=0,
    batch_order="fixed",
    max_epochs=80_000,
    eval_every=10,
)


def prieto_optimizer(method: str | None, loss: str | None) -> dict[str, float]:
    """β₂ and ε as their run_main_experiments.sh ran each arm: their ⊥Grad wrapper passed neither to AdamW, so
    ⊥AdamW ran at torch's (0.999, 1e-8) (their issue #11); StableMax at β₂ 0.999, the rest at 0.99, with their
    ε of 1e-25."""
    if method == "orthograd":
        return {"beta2": 0.999, "adam_eps": 1e-8}
    return {"beta2": 0.999 if loss == "stablemax" else 0.99, "adam_eps": 1e-25}


class ModArith(Task):
    name = "modarith"
    description = "a ∘ b = c (mod p) on a small transformer; presets nanda (default), grokfast and prieto_mlp"
    Settings = ModArithSettings
    # the Nanda preset's shared settings; full batch is added in shared_defaults
    defaults = dict(
        loss="ce",
        init_scale=1.0,
        dtype="float32",
        **{k: v for k, v in NANDA.items() if k not in ModArithSettings.names()},
    )
    losses = ("ce", "stablemax")
    presets = {"nanda": NANDA, "grokfast": GROKFAST, "prieto_mlp": PRIETO_MLP}
    grok_threshold = 0.95
    final_metrics = ("train_acc", "test_acc", "gini_embed", "gini_unembed")
    # Grokfast's authors plot accuracy against log steps; GrokAlign Figs. 8–9 the Gini coefficients, with trained and
    # with frozen embeddings (two conditions); the Grokfast arms change the weight decay with the filter, and
    # Prieto et al.'s softmax-collapse arms the loss's precision, the step size and Adam's ε
    presentation = Presentation(
        name="gini",
        title="Gini coefficients",
        tabled=("gini_embed", "gini_unembed"),
        plotted=("gini_embed", "gini_unembed"),
        log_steps=True,
        conditions=("freeze_embeddings",),
        variants=("weight_decay", "softmax_precision", "lr", "adam_eps"),
    )

    def shared_defaults(self, settings: ModArithSettings) -> dict[str, Any]:
        return {**super().shared_defaults(settings), "batch_size": self._train_size(settings)}  # full batch

    def preset_values(self, preset: str, given: dict[str, Any]) -> dict[str, Any]:
        values = self.presets[preset]
        if preset == "prieto_mlp":
            return {**values, **prieto_optimizer(given.get("method"), given.get("loss"))}
        return values

    def train_size(self, cfg: TrialConfig) -> int:
        return self._train_size(cfg.task_settings)

    @staticmethod
    def _train_size(settings: ModArithSettings) -> int:
        return int(settings.train_fraction * equation_count(settings))

    def load_data(self, cfg: TrialConfig) -> TaskData:
        settings = cfg.task_settings
        x, y = equations(settings)
        seed = cfg.seed + SPLIT_SEED_OFFSET if settings.data_seed is None else settings.data_seed
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
        train, test = order[: self._train_size(settings)], order[self._train_size(settings) :]
        return TaskData(x[train], y[train], x[test], y[test])

    def build_model(self, cfg: TrialConfig) -> nn.Module:
        s = cfg.task_settings
        if s.architecture == "mlp":
            return scale_weights(OneHotMLP(s.p, getattr(torch, cfg.dtype)), cfg.init_scale)
        return Transformer(
            Architecture(
                vocabulary=s.p + 2 if s.op_token else s.p + 1,
                sequence_length=4 if s.op_token else 3,
                n_layers=s.n_layers,
                d_model=s.d_model,
                n_heads=s.n_heads,
                d_mlp=s.d_mlp,
                activation=s.activation,
                layer_norm=s.layer_norm,
                attention_bias=s.attention_bias,
                init=s.init,
                init_scale=cfg.init_scale,
                freeze_embeddings=s.freeze_embeddings,
                dtype=getattr(torch, cfg.dtype),
            )
        )

    def evaluator(self, cfg: TrialConfig, data: TaskData, device: torch.device) -> Evaluator:
        gini = FourierGini(cfg.task_settings.p, cfg.task_settings.op in NONZERO_B, device)
        return ModArithEvaluation(data.to(device), self.loss_fn(cfg), gini)


TASK = ModArith()
