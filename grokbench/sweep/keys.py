"""Names shared by the sweep and the analysis: a trial's stable key (the same config gives the same key in every
process and after every restart), the MLflow tags that find a sweep's runs, and experiment names."""

from __future__ import annotations

import hashlib
import json
from typing import Any

SWEEP_TAG = "grokbench.sweep_id"
KEY_TAG = "grokbench.trial_key"
EXPERIMENT_PREFIX = "grokbench/"
FINAL_STATUSES = ("grokked", "censored", "diverged")  # a trial's outcomes; "failed" is none: it runs again


def experiment_name(name: str) -> str:
    """The MLflow experiment of a sweep file's runs: `mnist` → `grokbench/mnist` (a full name is kept)."""
    return name if name.startswith(EXPERIMENT_PREFIX) else EXPERIMENT_PREFIX + name


# fields that say where and how fast a trial runs, not what it computes
PLACEMENT_FIELDS = ("device", "threads", "data_dir")


def trial_key(config: dict[str, Any]) -> str:
    science = {k: v for k, v in sorted(config.items()) if k not in PLACEMENT_FIELDS}
    digest = hashlib.sha1(json.dumps(science, sort_keys=True).encode()).hexdigest()[:8]
    lam = config.get("lam")
    lam_text = "" if lam in (None, 0, 0.0) else f"-lam{lam:g}"
    return f"{config['method']}-{config['loss']}{lam_text}-init{config['init_scale']:g}-seed{config['seed']}-{digest}"
