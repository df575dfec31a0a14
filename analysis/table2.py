"""`python -m analysis.table2`: GrokAlign's Table 2 — the Jacobian row alignment (cosine of each row of J_f(x) with
x; min and max over rows, averaged over probe points) and the test accuracy of the baseline, GrokAlign and
adversarial training, per loss, beside the paper's values.

The paper does not say when it measured, so each trial is read twice: at the end of its fixed budget, and at its
first evaluation at or above the paper's test accuracy for that method and loss. A trial counts when it trained on
past grokking (`epochs_after_grok` > 0) at Table 1's initialisation scale; trials that stop at grokking (85 %) never
reach the paper's accuracies.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from analysis.cells import fmt
from analysis.groups import LOSS_NAMES, METHOD_NAMES
from analysis.output import (
    Table,
    add_format_argument,
    add_output_arguments,
    add_tracking_argument,
    log_analysis_run,
    output_dir,
    run_command,
    show_and_write,
)
from analysis.plotting import COLOURS, histories, legend_beside, save
from analysis.runs import AnalysisError, load_runs
from grokbench.sweep.uri import tracking_uri


@dataclass(frozen=True)
class Reading:
    """A trial's test accuracy and row alignment at one evaluation."""

    epoch: float
    accuracy: float
    row_min: float
    row_max: float


# SPEC "GrokAlign Table 2" (its two sub-tables read as cross-entropy, then MSE): test accuracy, row alignment min, max
PUBLISHED = {
    "ce": {
        "baseline": Reading(np.nan, 0.889, -0.254, 0.283),
        "grokalign": Reading(np.nan, 0.918, -0.509, 0.478),
        "adversarial": Reading(np.nan, 0.880, -0.253, 0.274),
    },
    "mse": {
        "baseline": Reading(np.nan, 0.868, -0.170, 0.272),
        "grokalign": Reading(np.nan, 0.882, -0.638, 0.709),
        "adversarial": Reading(np.nan, 0.878, -0.263, 0.376),
    },
}
TABLE1_INIT_SCALE = 8.0
CURVES = ("epoch", "test_acc", "row_alignment_min", "row_alignment_max")
READINGS = ("end", "paper")  # at the end of the budget; at the first evaluation at or above the paper's accuracy


def table2_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The finished MNIST trials of Table 2's methods at Table 1's init scale that trained on past grokking."""
    published = pd.Series(
        [method in PUBLISHED.get(loss, {}) for method, loss in zip(runs["method"], runs["loss"], strict=True)],
        index=runs.index,
        dtype=bool,
    )
    keep = (
        (runs["task"] == "mnist")
        & (runs["status"] != "running")
        & (runs["init_scale"] == TABLE1_INIT_SCALE)
        & (runs["epochs_after_grok"].fillna(0) > 0)
        & published
    )
    return runs[keep]


def evaluations(history: pd.DataFrame) -> pd.DataFrame:
    """The evaluations that logged every figure Table 2 reads, in step order."""
    return history.reindex(columns=list(CURVES)).dropna().sort_index()


def reading(row: pd.Series) -> Reading:
    return Reading(row["epoch"], row["test_acc"], row["row_alignment_min"], row["row_alignment_max"])


def at_end(history: pd.DataFrame) -> Reading | None:
    points = evaluations(history)
    return reading(points.iloc[-1]) if len(points) else None


def at_accuracy(history: pd.DataFrame, accuracy: float) -> Reading | None:
    """The first evaluation whose test accuracy is at or above `accuracy`; None where none reached it."""
    points = evaluations(history)
    reached = points[points["test_acc"] >= accuracy]
    return reading(reached.iloc[0]) if len(reached) else None


def mean_std(values: list[float], scale: float = 1.0, digits: int = 3) -> str:
    if not values:
        return "—"
    spread = f" ± {fmt(float(np.std(values, ddof=1)) * scale, 2)}" if len(values) > 1 else ""
    return f"{fmt(float(np.mean(values)) * scale, digits)}{spread}"


def alignment_text(readings: list[Reading]) -> str:
    return f"{mean_std([r.row_min for r in readings])} / {mean_std([r.row_max for r in readings])}"


def welch_difference(method: list[float], baseline: list[float]) -> tuple[float, float, float, float] | None:
    """Difference of means (method − baseline), its 95 % Welch interval and the Welch t-test's p (two-sided)."""
    if len(method) < 2 or len(baseline) < 2:
        return None
    test = stats.ttest_ind(method, baseline, equal_var=False)
    interval = test.confidence_interval(0.95)
    return float(np.mean(method) - np.mean(baseline)), float(interval.low), float(interval.high), float(test.pvalue)


def difference_text(found: tuple[float, float, float, float] | None) -> str:
    if found is None:
        return "—"
    diff, low, high, p = found
    return f"{diff:+.3f} [{low:+.3f}, {high:+.3f}] p={p:.2g}"


def rms_distance(pairs: list[tuple[Reading, Reading]]) -> float | None:
    """Root mean square of (ours − paper's) over the row alignments (min and max) of the readings paired."""
    gaps = [g for ours, paper in pairs for g in (ours.row_min - paper.row_min, ours.row_max - paper.row_max)]
    return float(np.sqrt(np.mean(np.square(gaps)))) if gaps else None


def means(readings: list[Reading]) -> Reading:
    return Reading(*(float(np.mean([getattr(r, f) for r in readings])) for f in Reading.__dataclass_fields__))


def loss_table(loss: str, runs: pd.DataFrame, hist: dict[str, pd.DataFrame]) -> Table:
    """One sub-table of Table 2: a row per method, read at the end and at the paper's accuracy."""
    headers = ["Method", "seeds", "paper: test acc (%)", "paper: min / max", "end: epoch", "end: test acc (%)"]
    headers += ["end: min / max", "Δ min vs baseline (end)", "Δ max vs baseline (end)"]
    headers += ["paper's acc reached", "at it: epoch", "at it: min / max"]
    table = Table(f"table2_{loss}", f"Table 2 — {LOSS_NAMES[loss]}: Jacobian row alignment and test accuracy", headers)
    read = {r: {} for r in READINGS}
    for method, paper in PUBLISHED[loss].items():
        trials = runs[(runs["loss"] == loss) & (runs["method"] == method)].sort_values("seed")
        if trials.empty:
            continue
        ends = [at_end(hist[r]) for r in trials["run_id"]]
        reached = [at_accuracy(hist[r], paper.accuracy) for r in trials["run_id"]]
        read["end"][method] = [r for r in ends if r is not None]
        read["paper"][method] = [r for r in reached if r is not None]
        table.rows.append(method_row(method, paper, read, len(trials)))
        table.stats.append(method_stats(method, paper, read, len(trials)))
    table.notes += table2_notes(loss, read)
    return table


def method_row(method: str, paper: Reading, read: dict[str, dict[str, list[Reading]]], n: int) -> list[str]:
    ends, reached, base = read["end"][method], read["paper"][method], read["end"].get("baseline", [])
    differences = ["—", "—"]
    if method != "baseline":
        differences = [
            difference_text(welch_difference([getattr(r, f) for r in ends], [getattr(r, f) for r in base]))
            for f in ("row_min", "row_max")
        ]
    return [
        METHOD_NAMES.get(method, method),
        str(n),
        f"{paper.accuracy * 100:.1f}",
        f"{paper.row_min:.3f} / {paper.row_max:.3f}",
        mean_std([r.epoch for r in ends], digits=5),
        mean_std([r.accuracy for r in ends], scale=100),
        alignment_text(ends),
        *differences,
        f"{len(reached)}/{n}",
        mean_std([r.epoch for r in reached], digits=5),
        alignment_text(reached),
    ]


def method_stats(method: str, paper: Reading, read: dict[str, dict[str, list[Reading]]], n: int) -> dict:
    columns = {"method": method, "n": n, "paper_acc": paper.accuracy}
    for which in READINGS:
        found = read[which][method]
        columns[f"{which}_n"] = len(found)
        if found:
            mean = means(found)
            columns |= {f"{which}_{f}": getattr(mean, f) for f in Reading.__dataclass_fields__}
    return columns


def table2_notes(loss: str, read: dict[str, dict[str, list[Reading]]]) -> list[str]:
    fits = []
    for which, name in zip(READINGS, ("at the end of the budget", "at the paper's accuracy"), strict=True):
        pairs = [(means(r), PUBLISHED[loss][m]) for m, r in read[which].items() if r]
        distance = rms_distance(pairs)
        if distance is not None:
            fits.append(f"{name} {distance:.3f} ({len(pairs)} methods)")
    return [
        "each cell: mean ± std over the seeds read (row alignment: min / max over the Jacobian's rows, averaged over "
        "the probe points); paper: GrokAlign Table 2, as SPEC gives it, one value per cell",
        "end: the last evaluation of each trial's fixed budget; at it: each seed's first evaluation with test "
        "accuracy at or above the paper's for that method (a seed that never reached it is not read there)",
        "Δ vs baseline: difference of means at the end of the budget, with a 95 % Welch interval and the two-sided "
        "Welch t-test's p (scipy), seeds as the sample",
        "distance to the paper's row alignments (root mean square of ours − paper's over min and max, means over "
        "seeds): " + ("; ".join(fits) or "—"),
    ]


def table2(uri: str, runs: pd.DataFrame) -> tuple[list[Table], dict[str, pd.DataFrame]]:
    """Table 2 per loss that the runs hold, and the runs' histories (for the figure)."""
    runs = table2_runs(runs)
    if runs.empty:
        raise AnalysisError(
            "no finished MNIST trial of the baseline, GrokAlign or adversarial training at init scale 8 trained on "
            "past grokking (epochs_after_grok > 0): run sweeps/mnist_init.yaml or sweeps/mnist_table2_mse.yaml"
        )
    hist = histories(uri, runs, CURVES)
    tables = [loss_table(loss, runs, hist) for loss in PUBLISHED if loss in set(runs["loss"])]
    return tables, hist


def alignment_figure(runs: pd.DataFrame, hist: dict[str, pd.DataFrame], loss: str):
    """Row alignment (max above zero, min below) against test accuracy over training, a thin line per seed and a
    colour per method; ● each seed's end of budget, ★ the paper's value at the paper's accuracy."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, paper in PUBLISHED[loss].items():
        colour = COLOURS.get(method, "k")
        for i, run_id in enumerate(runs[(runs["loss"] == loss) & (runs["method"] == method)]["run_id"]):
            points = evaluations(hist[run_id])
            for column in ("row_alignment_max", "row_alignment_min"):
                label = METHOD_NAMES[method] if i == 0 and column == "row_alignment_max" else None
                ax.plot(points["test_acc"], points[column], "-", color=colour, lw=0.8, alpha=0.6, label=label)
                ax.plot(points["test_acc"].iloc[-1:], points[column].iloc[-1:], "o", color=colour, markersize=5)
        ax.plot([paper.accuracy] * 2, [paper.row_min, paper.row_max], "*", color=colour, markersize=13, mec="k")
    ax.axhline(0, color="0.6", lw=0.6)
    ax.set_xlim(0.8, 1.0)
    ax.set_xlabel("test accuracy")
    ax.set_ylabel("Jacobian row alignment (max > 0, min < 0)")
    ax.set_title(f"Table 2 ({LOSS_NAMES[loss]}): ● end of budget, ★ the paper's", fontsize=9)
    legend_beside(ax)
    return fig


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m analysis.table2", description=__doc__.split("\n\n")[0])
    add_tracking_argument(parser)
    parser.add_argument(
        "--experiment",
        default="mnist_init,mnist_table2_mse",
        help="sweep file name(s), comma-separated (default mnist_init,mnist_table2_mse)",
    )
    add_output_arguments(parser, "mnist_table2")
    add_format_argument(parser)
    parser.add_argument("--no-log", action="store_true", help="do not log the tables and figures to MLflow")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_command("analysis.table2", args.format, lambda formats: command(args, formats))


def command(args: argparse.Namespace, formats: list[str]) -> list[Path]:
    uri = tracking_uri(args.tracking_uri)
    runs, read = load_runs(uri, [e.strip() for e in args.experiment.split(",") if e.strip()])
    tables, hist = table2(uri, runs)
    out = output_dir(args, "mnist_table2")
    written = show_and_write(tables, out, formats)
    chosen = table2_runs(runs)
    for loss in [t.name.removeprefix("table2_") for t in tables]:
        written += save(alignment_figure(chosen, hist, loss), out, f"row_alignment_{loss}")
    print(f"wrote {len(written)} files to {out.resolve()}")
    if not args.no_log:
        log_analysis_run(uri, read, None, written)
    return written


if __name__ == "__main__":
    raise SystemExit(main())
