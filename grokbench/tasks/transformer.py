"""A small decoder-only transformer that reads a short token sequence and predicts the token after it.

Two parameterisations, after the two reference implementations of modular-arithmetic grokking:
- `nanda`: Nanda et al.'s progress-measures-paper `transformers.py` (learned from, not copied): every matrix drawn
  from N(0, 1/d_model) (embedding, position embedding, Q/K/V, output projection, both MLP matrices), except the
  unembedding, N(0, 1/vocabulary); zero MLP biases; no attention biases and no unembedding bias.
- `torch`: what PyTorch's modules give the Grokfast authors' model (ironjr/grokfast `main.py`): N(0, 1)
  embeddings (`nn.Embedding`), `nn.MultiheadAttention`'s Xavier-uniform in-projection with zero biases, and
  `nn.Linear`'s uniform defaults for the attention output, the MLP and the bias-free head.

Attention is written out (matrix products and a softmax) rather than through PyTorch's fused kernels, which on
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


class Initialiser:
    """Initial tensors of one parameterisation, each multiplied by the initialisation scale."""

    def __init__(self, arch: Architecture):
        self.arch = arch

    def embedding(self, rows: int) -> nn.Parameter:
        variance = 1.0 if self.arch.init == "torch" else 1.0 / self.arch.d_model
        return self._scaled(_normal((rows, self.arch.d_model), variance, self.arch.dtype))

    def weight(self, n_out: int, n_in: int, kind: str = "linear") -> nn.Parameter:
        """kind: `linear` (an MLP or output-projection matrix), `qkv` (the stacked in-projection), `unembed`."""
        arch = self.arch
        if arch.init == "nanda":
            variance = 1.0 / (arch.vocabulary if kind == "unembed" else arch.d_model)
            return self._scaled(_normal((n_out, n_in), variance, arch.dtype))
        if kind == "qkv":  # Xavier-uniform over the stacked (3d × d) matrix, as nn.MultiheadAttention
            return self._scaled(_uniform((n_out, n_in), math.sqrt(6.0 / (n_in + n_out)), arch.dtype))
        return self._scaled(_uniform((n_out, n_in), 1.0 / math.sqrt(n_in), arch.dtype))  # nn.Linear's default

    def bias(self, n_out: int, fan_in: int, kind: str = "linear") -> nn.Parameter:
        """kind `linear`: an MLP bias (zero for nanda, nn.Linear's uniform default for torch); `attention`: zero,
        as nn.MultiheadAttention resets its biases."""
        if self.arch.init == "nanda" or kind == "attention":
            return self._scaled(torch.zeros(n_out, dtype=self.arch.dtype))
        return self._scaled(_uniform((n_out,), 1.0 / math.sqrt(fan_in), self.arch.dtype))

    def norm(self) -> tuple[nn.Parameter, nn.Parameter]:
        d, dtype = self.arch.d_model, self.arch.dtype
        return self._scaled(torch.ones(d, dtype=dtype)), self._scaled(torch.zeros(d, dtype=dtype))

    def _scaled(self, tensor: torch.Tensor) -> nn.Parameter:
        return nn.Parameter(tensor.mul_(self.arch.init_scale))


class Block(nn.Module):
    def __init__(self, arch: Architecture, init: Initialiser):
        super().__init__()
        d = arch.d_model
        self.n_heads, self.layer_norm, self.activation = arch.n_heads, arch.layer_norm, arch.activation
        if arch.layer_norm:
            self.norm1_weight, self.norm1_bias = init.norm()
            self.norm2_weight, self.norm2_bias = init.norm()
        self.qkv_weight = init.weight(3 * d, d, "qkv")  # rows: queries, keys, values
        self.out_weight = init.weight(d, d)
        self.qkv_bias = init.bias(3 * d, d, "attention") if arch.attention_bias else None
        self.out_bias = init.bias(d, d, "attention") if arch.attention_bias else None
        self.mlp_in_weight, self.mlp_in_bias = init.weight(arch.d_mlp, d), init.bias(arch.d_mlp, d)
        self.mlp_out_weight, self.mlp_out_bias = init.weight(d, arch.d_mlp), init.bias(d, arch.d_mlp)

    def forward(self, x: torch.Tensor, last_only: bool) -> torch.Tensor:
        """(B, S, d) → (B, S, d), or (B, 1, d) for the last position alone when `last_only`."""
        if self.layer_norm:
            x = F.layer_norm(x, x.shape[-1:], self.norm1_weight, self.norm1_bias, LAYER_NORM_EPS)
        x = (x[:, -1:] if last_only else x) + self._attention(x, last_only)
        hidden = F.layer_norm(x, x.shape[-1:], self.norm2_weight, self.norm2_bias, LAYER_NORM_EPS) \
            if self.layer_norm else x
        hidden = F.linear(hidden, self.mlp_in_weight, self.mlp_in_bias)
        hidden = F.relu(hidden) if self.activation == "relu" else F.gelu(hidden)
        return x + F.linear(hidden, self.mlp_out_weight, self.mlp_out_bias)

    def _attention(self, x: torch.Tensor, last_only: bool) -> torch.Tensor:
        d = x.shape[-1]
        if last_only:  # the last position attends to every position: no mask, one query
            bias = (None,) * 2 if self.qkv_bias is None else (self.qkv_bias[:d], self.qkv_bias[d:])
            q = F.linear(x[:, -1:], self.qkv_weight[:d], bias[0])
            k, v = F.linear(x, self.qkv_weight[d:], bias[1]).chunk(2, dim=-1)
        else:
            q, k, v = F.linear(x, self.qkv_weight, self.qkv_bias).chunk(3, dim=-1)
        q, k, v = (self._heads(t) for t in (q, k, v))
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        if not last_only:
            length = x.shape[1]
            future = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(diagonal=1)
            scores = scores.masked_fill(future, float("-inf"))
        z = (scores.softmax(dim=-1) @ v).transpose(1, 2).flatten(2)
        return F.linear(z, self.out_weight, self.out_bias)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        """(B, S, d) → (B, heads, S, d/heads)."""
        return t.unflatten(-1, (self.n_heads, -1)).transpose(1, 2)


class Transformer(nn.Module):
    """Token sequences (B, S) → logits over the vocabulary for the token after the last (B, vocabulary).

    `embed` and `from_embeddings` split the forward pass at the input embedding (token plus position embedding,
    flattened to (B, S·d)): the continuous input space where methods differentiate and add noise."""

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
        self.unembedding = init.weight(arch.vocabulary, arch.d_model, "unembed")  # rows: output tokens

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return (self.token_embedding[tokens] + self.position_embedding).flatten(1)

    def from_embeddings(self, embedded: torch.Tensor) -> torch.Tensor:
        h = embedded.unflatten(1, (self.arch.sequence_length, self.arch.d_model))
        for i, block in enumerate(self.blocks):
            h = block(h, last_only=i == len(self.blocks) - 1)
        return self.unembed(h[:, -1])

    def unembed(self, h: torch.Tensor) -> torch.Tensor:
        if self.arch.layer_norm:
            h = F.layer_norm(h, h.shape[-1:], self.final_norm_weight, self.final_norm_bias, LAYER_NORM_EPS)
        return F.linear(h, self.unembedding)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.from_embeddings(self.embed(tokens))
