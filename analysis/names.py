"""What the figures call things: an evaluation curve's panel title and axis label, and what each method's λ is
(GrokAlign's and Grokfast's λ mean different things, so they never share an axis)."""

from __future__ import annotations

METRICS = {  # evaluation curve → (panel title, y-axis label)
    "centroid_alignment": ("Centroid alignment", "cosine(centroid, input)"),
    "row_alignment_max": ("Jacobian row alignment, best row", "cosine(row, input)"),
    "row_alignment_min": ("Jacobian row alignment, worst row", "cosine(row, input)"),
    "jacobian_norm": ("Jacobian norm", "norm of the input Jacobian"),
    "gini_embed": ("Gini coefficient of the embedding", "Gini coefficient"),
    "gini_unembed": ("Gini coefficient of the unembedding", "Gini coefficient"),
    "ntk_distance": ("NTK distance from initialisation", "1 − cosine(K₀, K)"),
    "kernel_alignment": ("Kernel–target alignment", "alignment"),
    "weight_change": ("Relative weight change", "|W − W₀| / |W₀|"),
}
LAMBDAS = {  # method → what its λ is, as an axis says it
    "grokalign": "GrokAlign λ (weight of the Jacobian penalty)",
    "grokfast": "Grokfast λ (gain on the slow gradient)",
    "adversarial": "Adversarial Training λ (scale of the input noise)",
}
SETTINGS = {"lam": "λ", "init_scale": "initialisation scale α"}


def metric_title(metric: str) -> str:
    return METRICS.get(metric, (metric.replace("_", " ").capitalize(), ""))[0]


def metric_label(metric: str) -> str:
    return METRICS.get(metric, ("", metric.replace("_", " ")))[1]


def lambda_label(method: str) -> str:
    return LAMBDAS.get(method, f"{method} λ")
