"""The performance profiles: ρ_m(τ) for τ from 1 to r_max, a panel per (ruleset, measure), a line per arm, drawn
as the exact step function it is (it rises at each of the arm's ratios). The PNG is byte-stable: fixed size and
resolution, and no metadata that names the software's version."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from grokbench.benchmark.score import ArmScore, profile_curve

SIZE = (4.2, 3.0)  # inches per panel
DPI = 110
STYLES = ("-", "--", "-.", ":")  # arms whose profiles coincide still show apart


def steps_of(ratios: list[float], r_max: float) -> np.ndarray:
    """τ where ρ may change, from 1 to r_max: the ratios within it, and the ends."""
    return np.array(sorted({1.0, r_max, *(r for r in ratios if 1.0 <= r <= r_max)}))


def profiles_figure(board: Mapping[tuple[str, str], Mapping[str, ArmScore]], r_max: float, path: Path) -> Path:
    """One panel per (ruleset, measure), rulesets as rows and measures as columns; saved as `path` (a PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rulesets = list(dict.fromkeys(r for r, _ in board))
    measures = list(dict.fromkeys(m for _, m in board))
    fig, axes = plt.subplots(
        len(rulesets), len(measures), figsize=(SIZE[0] * len(measures), SIZE[1] * len(rulesets)), squeeze=False
    )
    for (ruleset, measure), panel in board.items():
        ax = axes[rulesets.index(ruleset)][measures.index(measure)]
        for i, arm_score in enumerate(panel.values()):
            if arm_score.score is None:
                continue
            ratios = list(arm_score.ratios.values())
            taus = steps_of(ratios, r_max)
            ax.step(
                taus,
                profile_curve(ratios, taus),
                where="post",
                color=f"C{i % 10}",
                ls=STYLES[i % len(STYLES)],
                lw=1.6,
                label=f"{arm_score.arm} (B = {arm_score.score:.3f})",
            )
        ax.set(xlim=(1, r_max), ylim=(-0.03, 1.03), xlabel="τ (time ÷ the best arm's)", ylabel="ρ(τ)")
        ax.set_title(f"{ruleset} ruleset, {measure}", fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return path
