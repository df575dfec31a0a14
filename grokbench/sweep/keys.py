"""Names shared by the sweep and the analysis: a trial's stable key (the same config gives the same key in every
process and after every restart), the MLflow tags that find a sweep's runs, and experiment names."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from grokbench.config import TrialConfig, identity
from grokbench.resolve import stored_config

SWEEP_TAG = "grokbench.sweep_id"
KEY_TAG = "grokbench.trial_key"
VERSION_TAG = "grokbench.version"  # the code version (commit) that made a run
STOPPED_BY = "stopped_by"  # the key a Tune stopper marks a trial's last result with: its value names the stopper
STOPPED_BY_TAG = "grokbench.stopped_by"  # on the run of a trial a stopper ended before its outcome (censored)
EXPERIMENT_PREFIX = "grokbench/"
FINAL_STATUSES = ("grokked", "censored", "diverged")  # a trial's outcomes; "failed" is none: it runs again


def outcome_rank(status: str | None) -> int:
    """Which of a trial's runs speaks for it: one with an outcome (2) over a failed one (1) over one unfinished (0)."""
    return 2 if status in FINAL_STATUSES else 1 if status == "failed" else 0


def experiment_name(name: str) -> str:
    """The MLflow experiment of a sweep file's runs: `mnist` → `grokbench/mnist` (a full name is kept)."""
    return name if name.startswith(EXPERIMENT_PREFIX) else EXPERIMENT_PREFIX + name


def trial_key(config: TrialConfig | dict[str, Any]) -> str:
    """A trial's lasting identity, readable at a glance: method, loss, λ, init scale, seed and a digest of
    `config.identity` (no budget, no placement; settings at their neutral value left out). `config` is a
    resolved config or the flat settings of one stored by any version of grokbench."""
    cfg = config if isinstance(config, TrialConfig) else stored_config(config)
    digest = hashlib.sha1(json.dumps(identity(cfg), sort_keys=True).encode()).hexdigest()[:8]
    lam_text = "" if not cfg.lam else f"-lam{cfg.lam:g}"
    return f"{cfg.method}-{cfg.loss}{lam_text}-init{cfg.init_scale:g}-seed{cfg.seed}-{digest}"
