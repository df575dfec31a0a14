"""How a statistic reads in a table: a cell's text (mean ± std, or a Kaplan–Meier median or bound under censoring),
a speed-up's text and CSV columns, and the footnote saying how each speed-up was estimated and tested."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.stats import AFT, GEOMETRIC, LOGRANK, MEDIANS, WELCH, Cell, Sample, SpeedUp, cell

CELL_NOTE = (
    "each cell: mean ± std over seeds (median) when every seed grokked, else the Kaplan–Meier median, or "
    "> t where it never fell to 1/2 (t: the last time followed); steps are optimiser updates, times are "
    "training seconds"
)


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def median_range_text(values: Sequence[float]) -> str:
    """`median (min–max)` of the values, each as `fmt` writes it."""
    arr = np.asarray(values, dtype=float)
    return f"{fmt(float(np.median(arr)))} ({fmt(float(arr.min()))}–{fmt(float(arr.max()))})"


def seeds_text(runs: pd.DataFrame) -> str:
    return ", ".join(f"{seed:g}" for seed in sorted(runs["seed"].dropna().unique())) or "—"


def whole_text(value) -> str:
    return "—" if pd.isna(value) else f"{int(value):,}"


def number_text(value) -> str:
    return "—" if value is None or pd.isna(value) else f"{value:.1f}"


def cell_text(c: Cell) -> str:
    if c.n == 0:
        return "—"
    if not c.median_is_km:
        return f"{fmt(c.mean)} ± {fmt(c.std, 2)} (med {fmt(c.median)})"
    if c.exceeds is not None:
        return f"> {fmt(c.exceeds)} ({c.n - c.grokked} of {c.n} censored)"
    return f"KM med {fmt(c.median)} ({c.n - c.grokked} censored)"


def sample_text(sample: Sample) -> str:
    return cell_text(cell(sample.values, sample.observed))


AFT_MARK = "†"  # marks a speed-up estimated under censoring (AFT ratio, log-rank p)


def speed_text(s: SpeedUp | None) -> str:
    """ratio [95% CI] p, with ≥ / ≤ for a bound and † for an AFT ratio (see speed_notes)."""
    if s is None or s.ratio is None:
        return f"— p={s.p_value:.2g}" if s is not None and s.p_value is not None else "—"
    text = f"{s.bound + ' ' if s.bound else ''}×{s.ratio:.2f}"
    if s.ci_low is not None and s.ci_high is not None:
        text += f" [{s.ci_low:.2f}, {s.ci_high:.2f}]"
    if s.p_value is not None:
        text += f" p={s.p_value:.2g}"
    return text + (f" {AFT_MARK}" if s.estimand == AFT else "")


def per_seed_text(s: SpeedUp | None) -> str:
    if s is None or s.per_seed_mean is None:
        return "—"
    return f"{s.per_seed_mean:.2f}" + (f" ± {s.per_seed_std:.2f}" if s.per_seed_std is not None else "")


SPEED_FIELDS = (
    "ratio",
    "bound",
    "ci_low",
    "ci_high",
    "p_value",
    "estimand",
    "test",
    "median_ratio",
    "per_seed_mean",
    "per_seed_std",
    "pairs",
    "note",
)


def speed_columns(measure: str, s: SpeedUp | None) -> dict:
    """The CSV's machine-readable columns for one speed-up of a measure (empty for the baseline row)."""
    return {f"{measure}_{name}": (getattr(s, name) if s is not None else None) for name in SPEED_FIELDS}


def speed_notes(speeds: list[SpeedUp], per_seed_shown: bool = True) -> list[str]:
    """The footnote: how each kind of speed-up in the table was estimated and tested."""
    kinds = {(s.estimand, bool(s.bound)) for s in speeds if s.ratio is not None}
    notes = ["speed-up = baseline ÷ method (> 1: faster), shown as ratio [95% interval] p"]
    if (GEOMETRIC, False) in kinds:
        notes.append(
            f"where every trial of both rows grokked: the {GEOMETRIC}, with the 95% interval and p of one "
            f"{WELCH} (scipy), the interval exponentiated; none where a row has a single trial"
        )
    if (AFT, False) in kinds:
        notes.append(
            f"{AFT_MARK} a row with a censored trial: the {AFT} (lifelines; a baseline indicator, exp(coef)) "
            f"with its 95% Wald interval, p from a {LOGRANK}; under that model it is the ratio of geometric "
            "means and of medians"
        )
    if (MEDIANS, True) in kinds or (MEDIANS, False) in kinds:
        notes.append(
            f"where a row has fewer than 2 grokked trials (or the fit failed: the CSV's note says which) "
            f"there is no fit and no interval: the {MEDIANS}, p from a {LOGRANK}; ≥ / ≤: a bound, as that "
            "row's median is only known to exceed its last time followed"
        )
    if any(s.ratio is None and s.p_value is not None for s in speeds):
        notes.append(
            f"— p: both rows' medians are censored (the KM curves never fall to 1/2), so there is no ratio; "
            f"p from a {LOGRANK} of the two rows' times"
        )
    if per_seed_shown and any(s.per_seed_mean is not None for s in speeds):
        notes.append(
            "per-seed: the paper's form, mean ± std of baseline ÷ method per seed, the seeds paired by "
            "seed number over those both rows ran; only where every trial of both rows grokked"
        )
    return notes if len(notes) > 1 else []
