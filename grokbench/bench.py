"""`grokbench bench`: the cost of one optimiser update of each method on a task (`mnist` by default, with the
GrokAlign estimators beside the methods), relative to the baseline.

Every variant is a real `Trial` and is timed through the training loop's own `train_epochs` (so an
adversarial epoch's accuracy pass counts). Variants run interleaved in rounds in one process; each figure is the
median over rounds of the per-round ratio to the baseline, with its interquartile spread, because a noisy
neighbour on a small machine slows whole rounds, not single variants. A variant whose cost varies from update to
update (GrokAlign's penalty on a random 1/K of the updates) is timed over rounds of at least 8·K updates and
reported as the mean over rounds: a median of short rounds would mostly miss the expensive updates.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from grokbench.resolve import config_of
from grokbench.train import Trial

VARIANTS: dict[str, dict] = {
    "baseline": {"method": "baseline"},
    "grokalign": {"method": "grokalign"},  # the authors' estimator: output-space projection, one v per point
    "grokalign[exact]": {"method": "grokalign", "grokalign_estimator": "exact"},
    "grokalign[hutchinson]": {"method": "grokalign", "grokalign_estimator": "hutchinson"},
    "grokalign[hutchinson_shared]": {"method": "grokalign", "grokalign_estimator": "hutchinson_shared"},
    "grokalign[subset32]": {"method": "grokalign", "grokalign_subset": 32},
    "grokalign[subset64]": {"method": "grokalign", "grokalign_subset": 64},
    "grokalign[every4]": {"method": "grokalign", "grokalign_every": 4},
    "grokalign[every8]": {"method": "grokalign", "grokalign_every": 8},
    "grokfast": {"method": "grokfast"},
    "grokfast[ma]": {"method": "grokfast", "grokfast_variant": "ma"},
    "adversarial": {"method": "adversarial"},
    "orthograd": {"method": "orthograd"},
    "muon": {"method": "muon"},
    "norm_constraint": {"method": "norm_constraint"},
}
# on other tasks: the methods as they run
METHODS_ONLY = ("baseline", "grokalign", "grokfast", "adversarial", "orthograd", "muon", "norm_constraint")


@dataclass(frozen=True)
class Timing:
    ms_per_update: float
    ratio_to_baseline: float
    ratio_q25: float
    ratio_q75: float
    updates_per_round: int
    statistic: str  # over rounds: "median", or "mean" for a variant whose cost varies from update to update


def bare_matmuls(model: nn.Module, batch: int) -> Callable[[], None]:
    """The matrix products of one update of a bias-free MLP, into preallocated outputs: a forward product per
    layer, a weight-gradient product per layer, an activation-gradient product per layer but the first."""
    weights = [m.weight.detach() for m in model.modules() if isinstance(m, nn.Linear)]
    like = dict(dtype=weights[0].dtype, device=weights[0].device)
    acts = [torch.randn(batch, weights[0].shape[1], **like)] + [torch.randn(batch, w.shape[0], **like) for w in weights]
    grads = [torch.randn(batch, w.shape[0], **like) for w in weights]
    weight_grads = [torch.empty_like(w) for w in weights]
    act_grads = [torch.empty(batch, w.shape[1], **like) for w in weights]

    def run() -> None:
        for i, w in enumerate(weights):
            torch.mm(acts[i], w.t(), out=acts[i + 1])
        for i, w in enumerate(weights):
            torch.mm(grads[i].t(), acts[i], out=weight_grads[i])
            if i:
                torch.mm(grads[i], w, out=act_grads[i])

    return run


def epochs_per_round(cost_period: int, steps_per_epoch: int) -> int:
    """One epoch, or for a variant whose cost averages out over `cost_period` updates, enough epochs to hold 8
    such periods."""
    return 1 if cost_period == 1 else math.ceil(8 * cost_period / steps_per_epoch)


def _time(fn: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def default_variants(task: str) -> dict[str, dict]:
    return VARIANTS if task == "mnist" else {name: VARIANTS[name] for name in METHODS_ONLY}


def run_bench(
    threads: int | None = None,
    rounds: int = 20,
    warmup: int = 2,
    device: str = "auto",
    data_dir: str | None = None,
    task: str = "mnist",
    preset: str | None = None,
    variants: dict[str, dict] | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> dict:
    base = dict(task=task, preset=preset, threads=threads, device=device, data_dir=data_dir)
    variants = default_variants(task) if variants is None else variants
    trials = {name: Trial(config_of(**base, **overrides)) for name, overrides in variants.items()}
    reference = trials["baseline"]
    steps_per_epoch = len(reference.batches)

    epochs = {name: epochs_per_round(t.method.cost_period, steps_per_epoch) for name, t in trials.items()}
    epochs["floor"] = 1

    def epochs_of(trial: Trial, n: int) -> Callable[[], None]:
        return lambda: trial.train_epochs(n)

    timed: dict[str, Callable[[], None]] = {name: epochs_of(t, epochs[name]) for name, t in trials.items()}
    if task == "mnist":  # the floor is the bare matrix products of an MLP update
        floor = bare_matmuls(reference.model, reference.cfg.batch_size)
        timed["floor"] = lambda: [floor() for _ in range(steps_per_epoch)]
    order = list(timed)
    seconds: dict[str, list[float]] = {name: [] for name in order}
    for r in range(warmup + rounds):
        random.Random(r).shuffle(order)  # no variant always runs right after the same neighbour
        for name in order:
            elapsed = _time(timed[name], reference.device)
            if r >= warmup:
                seconds[name].append(elapsed / (epochs[name] * steps_per_epoch))
        progress(f"round {r + 1}/{warmup + rounds}")

    def timing(name: str) -> Timing:
        ratios = [s / b for s, b in zip(seconds[name], seconds["baseline"], strict=False)]
        q25, _, q75 = statistics.quantiles(ratios, n=4)
        varies = name != "floor" and trials[name].method.cost_period > 1
        average = statistics.mean if varies else statistics.median
        return Timing(
            1e3 * average(seconds[name]),
            average(ratios),
            q25,
            q75,
            epochs[name] * steps_per_epoch,
            "mean" if varies else "median",
        )

    cfg = reference.cfg
    return {
        "setting": f"{task}{f' (preset {preset})' if preset else ''}, {cfg.dtype}, batch {cfg.batch_size}",
        "threads": torch.get_num_threads(),
        "device": str(reference.device),
        "rounds": rounds,
        "timings": {name: timing(name) for name in seconds},
    }


def format_bench(report: dict) -> str:
    lines = [
        f"{report['setting']}, {report['device']}, {report['threads']} thread(s), "
        f"median of {report['rounds']} interleaved rounds",
        f"{'variant':<30}{'ms/update':>10}{'× baseline':>12}   IQR of the ratio",
    ]
    for name, t in report["timings"].items():
        line = f"{name:<30}{t.ms_per_update:>10.2f}{t.ratio_to_baseline:>12.2f}   {t.ratio_q25:.2f}–{t.ratio_q75:.2f}"
        if t.statistic == "mean":
            line += f"   (mean over rounds of {t.updates_per_round} updates: its cost varies by update)"
        lines.append(line)
    if "floor" in report["timings"]:
        lines.append(
            f"(floor = the 11 bare matrix products of one baseline update; baseline = "
            f"{1 / report['timings']['floor'].ratio_to_baseline:.2f}× floor)"
        )
    return "\n".join(lines)


def bench_json(report: dict) -> dict:
    out: dict = {
        name: {
            "ms_per_update": t.ms_per_update,
            "ratio_to_baseline": t.ratio_to_baseline,
            "statistic": t.statistic,
            "updates_per_round": t.updates_per_round,
        }
        for name, t in report["timings"].items()
        if name != "floor"
    }
    if "floor" in report["timings"]:
        floor = report["timings"]["floor"]
        out["floor"] = {"ms_per_update": floor.ms_per_update, "baseline_over_floor": 1 / floor.ratio_to_baseline}
    out["threads"] = report["threads"]
    out["device"] = report["device"]
    return out
