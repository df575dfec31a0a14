"""A small decoder-only transformer that reads a short token sequence and predicts the token after it.

Two parameterisations, after the two reference implementations of modular-arithmetic grokking:
- `nanda`: Nanda et al.'s progress-measures-paper `transformers.py` (learned from, not copied): every matrix drawn
  from N(0, 1/d_model) (embedding, position embedding, Q/K/V, output projection, both MLP matrices), except the
  unembedding, N(0, 1/vocabulary); zero MLP biases; no attention biases and no unembedding bias.
- `torch`: what PyTorch's modules give the Grokfast authors' model (ironjr/grokfast `main.py`): N(0, 1)
  embeddings (`nn.Embedding`), `nn.MultiheadAttention`'s Xavier-uniform in-projection with zero biases, and
  `nn.Linear`'s uniform defaults for the attention output, the MLP and the bias-free head.

Attention is written out (products and a softmax) rather than through PyTorch's fused kernels, which on
the CPU have no double backward: GrokAlign differentiates the network's input Jacobian. With LayerNorm on, a
block follows the Grokfast authors' block: the residual stream continues from the normalised input
(x ← LN₁(x); x ← x + attn(x); x ← x + MLP(LN₂(x))), and a final LayerNorm precedes the head.

Only the last position's output is a prediction, and with causal attention nothing else depends on it in the
last layer: there only the last position's query, attention output, MLP and unembedding are computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

LAYER_NORM_EPS = 1e-5  # nn.LayerNorm's default, the Grokfast authors' model


@dataclass(frozen=True)
class Architecture:
    vocabulary: int
    sequence_length: int
    n_layers: int
    d_model: int
    n_heads: int
    d_mlp: int
    activation: str  # relu | gelu
    layer_norm: bool
    attention_bias: bool
    init: str  # nanda | torch
    init_scale: float
    freeze_embeddings: bool
    dtype: torch.dtype


def _normal(shape: tuple[int, ...], variance: float, dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(shape, dtype=dtype) * math.sqrt(variance)


def _uniform(shape: tuple[int, ...], bound: float, dtype: torch.dtype) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype).uniform_(-bound, bound)


def softmax(scores: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax from its parts: PyTorch's fused softmax cannot be backpropagated through after forward-mode
    differentiation (its tangent modifies a saved result in place), which GrokAlign's Hutchinson estimators do.
    The maximum is a constant shift, so it needs no gradient."""
    shifted = (scores - scores.amax(dim=dim, keepdim=True).detach()).exp()
    return shifted / shifted.sum(dim=dim, keepdim=True)


class Initialiser:
    """Initial parameters of one parameterisation, each multiplied by the initialisation scale."""

    def __init__(self, arch: Architecture):
        self.arch = arch

    def embedding(self, rows: int) -> nn.Parameter:
        variance = 1.0 if self.arch.init == "torch" else 1.0 / self.arch.d_model
        return self._scaled(_normal((rows, self.arch.d_model), variance, self.arch.dtype))

    def weight(self, n_out: int, n_in: int, unembedding: bool = False) -> nn.Parameter:
        """An MLP, output-projection or unembedding matrix (n_out × n_in)."""
        if self.arch.init == "nanda":
            variance = 1.0 / (self.arch.vocabulary if unembedding else self.arch.d_model)
            return self._scaled(_normal((n_out, n_in), variance, self.arch.dtype))
        return self._scaled(_uniform((n_out, n_in), 1.0 / math.sqrt(n_in), self.arch.dtype))  # nn.Linear's

    def query_key_value(self) -> list[nn.Parameter]:
        """Three d × d matrices, drawn as nn.MultiheadAttention draws its stacked (3d × d) in-projection
        (Xavier-uniform over the stack) for `torch`."""
        d, dtype = self.arch.d_model, self.arch.dtype
        stacked = (
            _normal((3 * d, d), 1.0 / d, dtype)
            if self.arch.init == "nanda"
            else _uniform((3 * d, d), math.sqrt(6.0 / (4 * d)), dtype)
        )
        return [self._scaled(part.clone()) for part in stacked.chunk(3)]

    def bias(self, n_out: int, fan_in: int) -> nn.Parameter:
        """An MLP bias: zero for `nanda`, nn.Linear's uniform default for `torch`."""
        if self.arch.init == "nanda":
            return self.zeros(n_out)
        return self._scaled(_uniform((n_out,), 1.0 / math.sqrt(fan_in), self.arch.dtype))

    def zeros(self, n: int) -> nn.Parameter:
        """Attention biases (nn.MultiheadAttention resets them to zero) and LayerNorm shifts."""
        return self._scaled(torch.zeros(n, dtype=self.arch.dtype))

    def norm(self) -> tuple[nn.Parameter, nn.Parameter]:
        return self._scaled(torch.ones(self.arch.d_model, dtype=self.arch.dtype)), self.zeros(self.arch.d_model)

    def _scaled(self, tensor: torch.Tensor) -> nn.Parameter:
        return nn.Parameter(tensor.mul_(self.arch.init_scale))


class Block(nn.Module):
    """One layer, in two steps: `project` (LayerNorm and the query, key and value projections, each of one position
    alone) and `mix` (attention across positions, then the MLP)."""

    def __init__(self, arch: Architecture, init: Initialiser):
        super().__init__()
        d = arch.d_model
        self.n_heads, self.layer_norm, self.activation = arch.n_heads, arch.layer_norm, arch.activation
        if arch.layer_norm:
            self.norm1_weight, self.norm1_bias = init.norm()
            self.norm2_weight, self.norm2_bias = init.norm()
        self.q_weight, self.k_weight, self.v_weight = init.query_key_value()
        self.q_bias, self.k_bias, self.v_bias = (
            (init.zeros(d) for _ in range(3)) if arch.attention_bias else (None,) * 3
        )
        self.out_weight = init.weight(d, d)
        self.out_bias = init.zeros(d) if arch.attention_bias else None
        self.mlp_in_weight, self.mlp_in_bias = init.weight(arch.d_mlp, d), init.bias(arch.d_mlp, d)
        self.mlp_out_weight, self.mlp_out_bias = init.weight(d, arch.d_mlp), init.bias(d, arch.d_mlp)

    def forward(self, x: torch.Tensor, last_only: bool) -> torch.Tensor:
        """(B, S, d) → (B, S, d), or (B, 1, d) for the last position alone when `last_only`."""
        x, q, k, v = self.project(x, last_only)
        return self.mix(x, q, k, v)

    def project(self, x: torch.Tensor, last_only: bool) -> tuple[torch.Tensor, ...]:
        """The residual stream and the queries at the query positions (the last one when `last_only`), and the
        keys and values at every position."""
        if self.layer_norm:
            x = F.layer_norm(x, x.shape[-1:], self.norm1_weight, self.norm1_bias, LAYER_NORM_EPS)
        k, v = F.linear(x, self.k_weight, self.k_bias), F.linear(x, self.v_weight, self.v_bias)
        x = x[:, -1:] if last_only else x
        return x, F.linear(x, self.q_weight, self.q_bias), k, v

    def mix(self, x: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Causal attention from the query positions (the last of the key positions when there is one query),
        added to the residual stream x, then the MLP. With a handful of positions, products broadcast over
        (batch, query, key, head) are cheaper than batched matrix products of 1×32 by 32×3 matrices."""
        q, k, v = (t.unflatten(-1, (self.n_heads, -1)) for t in (q, k, v))  # (B, S, heads, d/heads)
        scores = (q.unsqueeze(2) * k.unsqueeze(1)).sum(-1) / math.sqrt(q.shape[-1])  # (B, S_q, S_k, heads)
        if q.shape[1] > 1:
            length = q.shape[1]
            future = torch.ones(length, length, dtype=torch.bool, device=q.device).triu(diagonal=1)
            scores = scores.masked_fill(future.unsqueeze(-1), float("-inf"))
        z = (softmax(scores, dim=2).unsqueeze(-1) * v.unsqueeze(1)).sum(2).flatten(2)  # (B, S_q, d)
        x = x + F.linear(z, self.out_weight, self.out_bias)
        hidden = (
            F.layer_norm(x, x.shape[-1:], self.norm2_weight, self.norm2_bias, LAYER_NORM_EPS) if self.layer_norm else x
        )
        hidden = F.linear(hidden, self.mlp_in_weight, self.mlp_in_bias)
        hidden = F.relu(hidden) if self.activation == "relu" else F.gelu(hidden)
        return x + F.linear(hidden, self.mlp_out_weight, self.mlp_out_bias)


class Transformer(nn.Module):
    """Token sequences (B, S) → logits over the vocabulary for the token after the last (B, vocabulary).

    `embed` and `from_embeddings` split the forward pass at the input embedding (token plus position embedding,
    flattened to (B, S·d)): the continuous input space where methods differentiate and add noise. `forward` on
    tokens computes the same function more cheaply: the first layer's projections act on one position at a time,
    and a position holds one of `vocabulary` tokens, so they are computed once per (token, position) and looked
    up, instead of once per sequence."""

    def __init__(self, arch: Architecture):
        super().__init__()
        init = Initialiser(arch)
        self.arch = arch
        token_embedding = init.embedding(arch.vocabulary)
        if arch.freeze_embeddings:  # a buffer: saved with the model, never trained or decayed
            self.register_buffer("token_embedding", token_embedding.detach())
        else:
            self.token_embedding = token_embedding
        self.position_embedding = init.embedding(arch.sequence_length)
        self.blocks = nn.ModuleList(Block(arch, init) for _ in range(arch.n_layers))
        if arch.layer_norm:
            self.final_norm_weight, self.final_norm_bias = init.norm()
        self.unembedding = init.weight(arch.vocabulary, arch.d_model, unembedding=True)  # rows: output tokens

    @property
    def output_layer(self) -> nn.Parameter:
        """The output layer (for methods that treat it apart: muon): registered before the blocks, it is not
        the last matrix among the parameters."""
        return self.unembedding

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return (self.token_embedding[tokens] + self.position_embedding).flatten(1)

    def from_embeddings(self, embedded: torch.Tensor) -> torch.Tensor:
        h = embedded.unflatten(1, (self.arch.sequence_length, self.arch.d_model))
        for i, block in enumerate(self.blocks):
            h = block(h, last_only=self._last(i))
        return self.unembed(h[:, -1])

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if len(tokens) < self.arch.vocabulary:  # fewer sequences than tokens: the lookup table would cost more
            return self.from_embeddings(self.embed(tokens))
        every = self.token_embedding.unsqueeze(1) + self.position_embedding  # (vocabulary, S, d)
        x, q, k, v = self.blocks[0].project(every, last_only=False)
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        k, v = k[tokens, positions], v[tokens, positions]
        at_queries = (tokens[:, -1:], positions[-1:]) if self._last(0) else (tokens, positions)
        h = self.blocks[0].mix(x[at_queries], q[at_queries], k, v)
        for i, block in enumerate(self.blocks[1:], start=1):
            h = block(h, last_only=self._last(i))
        return self.unembed(h[:, -1])

    def unembed(self, h: torch.Tensor) -> torch.Tensor:
        if self.arch.layer_norm:
            h = F.layer_norm(h, h.shape[-1:], self.final_norm_weight, self.final_norm_bias, LAYER_NORM_EPS)
        return F.linear(h, self.unembedding)

    def _last(self, i: int) -> bool:
        return i == len(self.blocks) - 1
