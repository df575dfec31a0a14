"""Helpers shared by the training-loop tests (test_trial.py on the CPU, test_devices.py on a GPU)."""

import io
from typing import NamedTuple

import torch

METHOD_SETTINGS = {
    "baseline": {},
    "grokalign": {"lam": 0.01},
    "grokfast": {"grokfast_variant": "ma", "grokfast_window": 5},
    "adversarial": {},
}
# GrokAlign's cheaper penalties, each with random draws of its own (several batches an epoch, so that the updates
# on either side of a checkpoint draw several times)
CHEAPER_GROKALIGN = {
    "grokalign_subset": {"method": "grokalign", "lam": 0.01, "batch_size": 100, "grokalign_subset": 16},
    "grokalign_every": {"method": "grokalign", "lam": 0.01, "batch_size": 100, "grokalign_every": 3},
}


class Killed(Exception):
    """The process dies: raised from an evaluation callback to stop a run part-way."""


def run_collecting(trial, stop_at_epoch=None):
    """Run the trial, collecting (step, metrics) at each evaluation; stop after the one at `stop_at_epoch`.

    Returns (summary, evaluations); the summary is None for a run stopped part-way.
    """
    seen = []

    def collect(ev, t):
        seen.append((ev.step, ev.metrics))
        if ev.epoch == stop_at_epoch:
            raise Killed

    try:
        return trial.run(callback=collect), seen
    except Killed:
        return None, seen


def parameters(trial):
    return torch.cat([p.detach().flatten() for p in trial.model.parameters()]).cpu()


def saved_and_reloaded(trial) -> dict:
    """The trial's state through bytes, loaded as the sweep's trainable loads a checkpoint."""
    buffer = io.BytesIO()
    torch.save(trial.state_dict(), buffer)
    return torch.load(io.BytesIO(buffer.getvalue()), map_location="cpu", weights_only=False)


def flat_tensors(value) -> torch.Tensor:
    """Every tensor in a nested state (dicts, lists) as one float64 vector, in order."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().flatten().to(torch.float64)
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else []
    return torch.cat([flat_tensors(v) for v in items] or [torch.zeros(0, dtype=torch.float64)])


class Resumed(NamedTuple):
    straight: object  # the trial run without a break
    straight_summary: dict
    straight_seen: list
    resumed: object  # the trial restored from the state saved at the break, run to the end
    resumed_summary: dict
    seen: list  # every evaluation, before the break and after it


def straight_and_resumed(cfg, stop_at_epoch) -> Resumed:
    """`cfg` run without a break, and run again by a process that dies right after the evaluation at
    `stop_at_epoch`, restored from its saved state (through bytes) and run to the end."""
    from grokbench.train import Trial

    straight = Trial(cfg)
    straight_summary, straight_seen = run_collecting(straight)
    first = Trial(cfg)
    _, seen = run_collecting(first, stop_at_epoch=stop_at_epoch)
    resumed = Trial.restore(saved_and_reloaded(first))
    resumed_summary, seen_after = run_collecting(resumed)
    return Resumed(straight, straight_summary, straight_seen, resumed, resumed_summary, seen + seen_after)
