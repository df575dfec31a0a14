"""`python -m analysis.table2`: GrokAlign's Table 2 — the Jacobian row alignment (cosine of each row of J_f(x) with
x; min and max over rows, averaged over probe points) and the test accuracy of the baseline, GrokAlign and
adversarial training, per loss, beside the paper's values.

The paper does not say when it measured, so each trial is read twice: at the end of its fixed budget, and at its
first evaluation at or above the paper's test accuracy for that method and loss. A trial counts when it trained on
past grokking to its whole budget (`epochs_after_grok` ≥ `max_epochs`) at Table 1's initialisation scale; trials
that stop at grokking (85 %) never reach the paper's accuracies.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

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
from analysis.stats import welch
from grokbench.sweep.uri import tracking_uri


@dataclass(frozen=True)
class Reading:
    """A trial's test accuracy and row alignment at one evaluation."""

    epoch: float
    accuracy: float
    row_min: float
    row_max: float


@dataclass(frozen=True)
class Published:
    """A cell of the paper's Table 2: test accuracy and row alignment (min, max), when measured not said."""

    accuracy: float
    row_min: float
    row_max: float


# GrokAlign Table 2 (the paper does not label its two sub-tables; read as cross-entropy, then MSE)
PUBLISHED = {
    "ce": {
        "baseline": Published(0.889, -0.254, 0.283),
        "grokalign": Published(0.918, -0.509, 0.478),
        "adversarial": Published(0.880, -0.253, 0.274),
    },
    "mse": {
        "baseline": Published(0.868, -0.170, 0.272),
        "grokalign": Published(0.882, -0.638, 0.709),
        "adversarial": Published(0.878, -0.263, 0.376),
    },
}
TABLE1_INIT_SCALE = 8.0
CURVES = ("epoch", "test_acc", "row_alignment_min", "row_alignment_max")
READINGS = {"end": "at the end of the budget", "paper": "at the paper's accuracy"}
LAST_PART = 0.9  # the last tenth of a budget: is the row alignment still moving when the budget ends?
ALIGNMENTS = ("row_min", "row_max")
ALIGNMENT_CURVES = {"row_min": "row_alignment_min", "row_max": "row_alignment_max"}  # a Reading's field → metric


def table2_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The MNIST trials of Table 2's methods at Table 1's init scale that trained on past grokking to the whole
    budget (`epochs_after_grok` ≥ `max_epochs`), of every outcome (a diverged one is counted, not read)."""
    published = pd.Series(
        [method in PUBLISHED.get(loss, {}) for method, loss in zip(runs["method"], runs["loss"], strict=True)],
        index=runs.index,
        dtype=bool,
    )
    keep = (
        (runs["task"] == "mnist")
        & (runs["status"] != "running")
        & (runs["init_scale"] == TABLE1_INIT_SCALE)
        & (runs["epochs_after_grok"] >= runs["max_epochs"])
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


def last_tenth(history: pd.DataFrame) -> pd.DataFrame:
    """The budget's last tenth: the evaluations from the last at or before `LAST_PART` of the final evaluation's
    epoch to the end (none where no evaluation came that early)."""
    points = evaluations(history)
    earlier = np.flatnonzero(points["epoch"] <= LAST_PART * points["epoch"].iloc[-1]) if len(points) else []
    return points.iloc[earlier[-1] :] if len(earlier) else points.iloc[:0]


def before_last_part(history: pd.DataFrame) -> Reading | None:
    """The evaluation the last tenth starts from."""
    part = last_tenth(history)
    return reading(part.iloc[0]) if len(part) else None


def scatter(history: pd.DataFrame) -> dict[str, float] | None:
    """Each alignment's standard deviation about the least-squares line through the last tenth's evaluations (n − 2
    degrees of freedom): how far one evaluation reads from the straight-line trend of its neighbours. None under
    three evaluations."""
    part = last_tenth(history)
    if len(part) < 3:
        return None
    epochs = part["epoch"].to_numpy()

    def about_line(column: str) -> float:
        found = part[column].to_numpy()
        residuals = found - np.polyval(np.polyfit(epochs, found, 1), epochs)
        return float(np.sqrt(residuals @ residuals / (len(found) - 2)))

    return {name: about_line(curve) for name, curve in ALIGNMENT_CURVES.items()}


def change(start: Reading, end: Reading) -> Reading:
    return Reading(*(getattr(end, f.name) - getattr(start, f.name) for f in fields(Reading)))


def values(readings: list[Reading], name: str) -> list[float]:
    return [getattr(r, name) for r in readings]


def spread(found: list[float]) -> str:
    """The " ± std" over seeds, or nothing for a single seed."""
    return f" ± {fmt(float(np.std(found, ddof=1)), 2)}" if len(found) > 1 else ""


def mean_std(readings: list[Reading], name: str, scale: float = 1.0) -> str:
    found = [v * scale for v in values(readings, name)]
    if not found:
        return "—"
    return f"{fmt(float(np.mean(found)), 5 if name == 'epoch' else 3)}{spread(found)}"


def alignment_text(readings: list[Reading]) -> str:
    return " / ".join(mean_std(readings, name) for name in ALIGNMENTS)


def mean_scatter(scatters: list[dict[str, float]], name: str) -> float:
    return float(np.mean([found[name] for found in scatters]))


def scatter_text(scatters: list[dict[str, float]]) -> str:
    """Mean over seeds of each alignment's scatter."""
    if not scatters:
        return "— / —"
    return " / ".join(f"{mean_scatter(scatters, name):.4f}" for name in ALIGNMENTS)


def change_text(changes: list[Reading]) -> str:
    """Mean ± std over seeds of each alignment's change, signed."""
    if not changes:
        return "— / —"
    found = [values(changes, name) for name in ALIGNMENTS]
    return " / ".join(f"{float(np.mean(f)):+.3f}{spread(f)}" for f in found)


def difference_text(method: list[Reading], baseline: list[Reading], name: str) -> str:
    """Difference of means (method − baseline) with its 95 % Welch interval and p."""
    if not method or not baseline:
        return "—"
    diff = float(np.mean(values(method, name)) - np.mean(values(baseline, name)))
    found = welch(values(method, name), values(baseline, name))
    if found is None:
        return f"{diff:+.3f}"
    low, high, p = found
    return f"{diff:+.3f} [{low:+.3f}, {high:+.3f}] p={p:.2g}"


def mean_reading(readings: list[Reading]) -> Reading:
    return Reading(*(float(np.mean(values(readings, f.name))) for f in fields(Reading)))


def distance(ours: Reading, paper: Published) -> float:
    """Root mean square of ours − the paper's over the row alignment's min and max."""
    return float(np.sqrt(np.mean([(getattr(ours, a) - getattr(paper, a)) ** 2 for a in ALIGNMENTS])))


@dataclass
class MethodReadings:
    """One method's trials on one loss, read both ways."""

    method: str
    paper: Published
    trials: pd.DataFrame  # every outcome
    read: dict[str, list[Reading]]  # reading → the seeds that have it (grokked or censored trials only)
    last_part: list[Reading]  # per seed read at the end: its change over the budget's last tenth
    scatter: list[dict[str, float]]  # per seed with three evaluations or more in the last tenth: their scatter


def method_readings(method: str, paper: Published, trials: pd.DataFrame, hist) -> MethodReadings:
    finished = trials[trials["status"].isin(["grokked", "censored"])]
    ends = [at_end(hist[r]) for r in finished["run_id"]]
    reached = [at_accuracy(hist[r], paper.accuracy) for r in finished["run_id"]]
    read = {"end": [r for r in ends if r], "paper": [r for r in reached if r]}
    starts = [before_last_part(hist[r]) for r in finished["run_id"]]
    last_part = [change(start, end) for start, end in zip(starts, ends, strict=True) if start and end]
    scatters = [found for found in (scatter(hist[r]) for r in finished["run_id"]) if found]
    return MethodReadings(method, paper, trials, read, last_part, scatters)


def loss_table(loss: str, runs: pd.DataFrame, hist: dict[str, pd.DataFrame]) -> Table:
    """One sub-table of Table 2: a row per method, read at the end and at the paper's accuracy."""
    headers = ["Method", "seeds read", "paper: test acc (%)", "paper: min / max", "end: epoch", "end: test acc (%)"]
    headers += ["end: min / max", "last tenth: Δ min / Δ max", "last tenth: scatter min / max"]
    headers += ["Δ min vs baseline (end)", "Δ max vs baseline (end)"]
    headers += ["paper's acc reached", "at it: epoch", "at it: min / max"]
    table = Table(f"table2_{loss}", f"Table 2 — {LOSS_NAMES[loss]}: Jacobian row alignment and test accuracy", headers)
    rows, missing = [], []
    for method, paper in PUBLISHED[loss].items():
        trials = runs[(runs["loss"] == loss) & (runs["method"] == method)].sort_values("seed")
        if trials.empty:
            missing.append(METHOD_NAMES.get(method, method))
        else:
            rows.append(method_readings(method, paper, trials, hist))
    baseline = next((r for r in rows if r.method == "baseline"), None)
    for found in rows:
        table.rows.append(method_row(found, baseline))
        table.stats.append(method_stats(found))
    table.notes += table2_notes(rows, missing)
    return table


def method_row(found: MethodReadings, baseline: MethodReadings | None) -> list[str]:
    ends, reached, paper = found.read["end"], found.read["paper"], found.paper
    differences = ["—", "—"]
    if found.method != "baseline" and baseline is not None:
        differences = [difference_text(ends, baseline.read["end"], name) for name in ALIGNMENTS]
    n = len(found.trials)
    return [
        METHOD_NAMES.get(found.method, found.method),
        f"{len(ends)}/{n}",
        f"{paper.accuracy * 100:.1f}",
        f"{paper.row_min:.3f} / {paper.row_max:.3f}",
        mean_std(ends, "epoch"),
        mean_std(ends, "accuracy", scale=100),
        alignment_text(ends),
        change_text(found.last_part),
        scatter_text(found.scatter),
        *differences,
        f"{len(reached)}/{len(ends)}",
        mean_std(reached, "epoch"),
        alignment_text(reached),
    ]


def method_stats(found: MethodReadings) -> dict:
    columns = {"method": found.method, "n": len(found.trials), "paper_acc": found.paper.accuracy}
    for which, readings in found.read.items():
        columns[f"{which}_n"] = len(readings)
        if readings:
            columns |= {f"{which}_{f.name}": getattr(mean_reading(readings), f.name) for f in fields(Reading)}
    if found.last_part:
        columns |= {f"last_tenth_{name}": float(np.mean(values(found.last_part, name))) for name in ALIGNMENTS}
    if found.scatter:
        columns |= {f"scatter_{name}": mean_scatter(found.scatter, name) for name in ALIGNMENTS}
    return columns


def table2_notes(rows: list[MethodReadings], missing: list[str]) -> list[str]:
    notes = [
        "each cell: mean ± std over the seeds read (row alignment: min / max over the Jacobian's rows, averaged over "
        "the probe points); paper: GrokAlign Table 2, its two sub-tables read as cross-entropy then MSE, one value "
        "per cell; seeds read: the trials that grokked or were censored, of all run (a diverged or failed one is not "
        "read)",
        "end: the last evaluation of each trial's fixed budget; at it: each seed's first evaluation with test "
        "accuracy at or above the paper's for that method (a seed that never reached it is not read there)",
        "last tenth: each seed's change in row alignment from its last evaluation at or before 90 % of its final "
        "epoch to its end, mean ± std over seeds: a reading still moving when the budget ends depends on the budget; "
        "scatter: the standard deviation of each seed's evaluations over that last tenth about their least-squares "
        "line (n − 2 degrees of freedom; the straight-line trend removed, any curvature counted), the mean over the "
        "seeds with three such evaluations or more (no ±): how far one evaluation, such as the end, may read from "
        "its neighbours' trend",
        "Δ vs baseline: difference of means at the end of the budget, with a 95 % Welch interval and the two-sided "
        "Welch t-test's p (scipy), seeds as the sample",
        fit_note(rows),
    ]
    return notes + ([f"not run: {', '.join(missing)}"] if missing else [])


def fit_note(rows: list[MethodReadings]) -> str:
    """Which reading lies nearer the paper's row alignments, over the methods that have both readings."""
    both = [r for r in rows if all(r.read.values())]
    if not both:
        return "distance to the paper's row alignments: no method has both readings"
    distances = {w: [distance(mean_reading(r.read[w]), r.paper) for r in both] for w in READINGS}
    means = {w: float(np.mean(d)) for w, d in distances.items()}
    per_method = "; ".join(
        f"{METHOD_NAMES.get(r.method, r.method)} {distances['end'][i]:.3f} / {distances['paper'][i]:.3f}"
        for i, r in enumerate(both)
    )
    nearer = min(means, key=means.get)
    return (
        f"distance to the paper's row alignments (root mean square of ours − paper's over min and max, means over "
        f"seeds), at the end / at the paper's accuracy: {per_method}; mean {means['end']:.3f} / "
        f"{means['paper']:.3f}: nearer {READINGS[nearer]}"
    )


def table2(uri: str, runs: pd.DataFrame) -> tuple[list[Table], pd.DataFrame, dict[str, pd.DataFrame]]:
    """Table 2 per loss that the runs hold, the runs it read and their histories (for the figure)."""
    runs = table2_runs(runs)
    if runs.empty:
        raise AnalysisError(
            "no MNIST trial of the baseline, GrokAlign or adversarial training at init scale 8 trained on past "
            "grokking to its whole budget (epochs_after_grok ≥ max_epochs): run sweeps/mnist_init.yaml or "
            "sweeps/mnist_table2_mse.yaml"
        )
    strengths = runs.groupby(["loss", "method"])["lam"].nunique()
    if (strengths > 1).any():
        loss, method = strengths[strengths > 1].index[0]
        raise AnalysisError(f"{method} ran at several λ on {loss} among these runs: read one experiment per loss")
    hist = histories(uri, runs, CURVES)
    tables = [loss_table(loss, runs, hist) for loss in PUBLISHED if loss in set(runs["loss"])]
    return tables, runs, hist


def alignment_figure(runs: pd.DataFrame, hist: dict[str, pd.DataFrame], loss: str):
    """Row alignment (max above zero, min below), a thin line per seed and a colour per method: against test accuracy
    (left), ● each seed's end of budget and ★ the paper's value at the paper's accuracy; and against epochs (right),
    which shows whether it still moves when the budget ends. The ends are drawn over every line."""
    import matplotlib.pyplot as plt

    fig, (by_accuracy, by_epoch) = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    ends, accuracies = [], []
    for method, paper in PUBLISHED[loss].items():
        colour = COLOURS.get(method, "k")
        read = runs[(runs["loss"] == loss) & (runs["method"] == method) & runs["status"].isin(["grokked", "censored"])]
        for i, run_id in enumerate(read["run_id"]):
            points = evaluations(hist[run_id])
            accuracies.append(points["test_acc"].max())
            for column in ("row_alignment_max", "row_alignment_min"):
                label = METHOD_NAMES.get(method, method) if i == 0 and column == "row_alignment_max" else None
                by_accuracy.plot(points["test_acc"], points[column], "-", color=colour, lw=0.8, alpha=0.6)
                by_epoch.plot(points["epoch"], points[column], "-", color=colour, lw=0.8, alpha=0.6, label=label)
                ends.append((points["test_acc"].iloc[-1], points[column].iloc[-1], colour))
        by_accuracy.plot(
            [paper.accuracy] * 2, [paper.row_min, paper.row_max], "*", color=colour, ms=13, mec="k", zorder=4
        )
        accuracies.append(paper.accuracy)
    for accuracy, alignment, colour in ends:
        by_accuracy.plot(accuracy, alignment, "o", color=colour, markersize=6, mec="k", mew=0.7, zorder=3)
    for ax in (by_accuracy, by_epoch):
        ax.axhline(0, color="0.6", lw=0.6)
    by_accuracy.set_xlim(0.8, min(1.0, max(accuracies, default=0.99) + 0.01))
    by_accuracy.set_xlabel("test accuracy")
    by_accuracy.set_ylabel("Jacobian row alignment (max > 0, min < 0)")
    by_accuracy.set_title(f"Table 2 ({LOSS_NAMES[loss]}): ● end of budget, ★ the paper's", fontsize=9)
    by_epoch.set_xlabel("epoch")
    by_epoch.set_title("over training", fontsize=9)
    legend_beside(by_epoch)
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
    tables, chosen, hist = table2(uri, runs)
    out = output_dir(args, "mnist_table2")
    written = show_and_write(tables, out, formats)
    for loss in [t.name.removeprefix("table2_") for t in tables]:
        written += save(alignment_figure(chosen, hist, loss), out, f"row_alignment_{loss}")
    print(f"wrote {len(written)} files to {out.resolve()}")
    if not args.no_log:
        log_analysis_run(uri, read, None, written)
    return written


if __name__ == "__main__":
    raise SystemExit(main())
