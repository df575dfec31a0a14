"""Where a trial ran: enough to tell whether two runs' seconds can be compared.

Steps do not depend on the machine; seconds do. Each run records the machine it trained on, and a time column pools
only runs whose `label` is the same.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

TAG_PREFIX = "grokbench.machine"
FIELDS = ("cpu", "cpus", "gpu", "torch", "threads")
NOT_RECORDED = "machine not recorded"


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it, or the architecture where it gives none."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "processor\t: arm")) and ":" in line:
                return " ".join(line.split(":", 1)[1].split())
    return platform.processor() or platform.machine() or "unknown CPU"


def this_machine(device: str = "cpu") -> dict[str, str]:
    """The machine the calling process trains on, with `device` the torch device the trial uses."""
    on_gpu = device.startswith("cuda") and torch.cuda.is_available()
    return {
        "cpu": cpu_model(),
        "cpus": str(os.cpu_count() or 1),
        "gpu": torch.cuda.get_device_name(torch.device(device)) if on_gpu else "none",
        "torch": torch.__version__,
        "threads": str(torch.get_num_threads()),
    }


def label(machine: dict[str, str]) -> str:
    """One line naming a machine; runs whose labels are equal have comparable seconds."""
    if not machine or any(field not in machine for field in FIELDS):
        return NOT_RECORDED
    gpu = "no GPU" if machine["gpu"] == "none" else machine["gpu"]
    threads = "1 thread" if machine["threads"] == "1" else f"{machine['threads']} threads"
    return f"{machine['cpu']} ×{machine['cpus']}, {gpu}, torch {machine['torch']}, {threads}"


def as_tags(machine: dict[str, str]) -> dict[str, str]:
    """The MLflow tags a run carries for its machine: each field, and the label that groups runs."""
    return {TAG_PREFIX: label(machine), **{f"{TAG_PREFIX}.{field}": machine[field] for field in FIELDS}}


def from_tags(tags: dict[str, str]) -> dict[str, str]:
    """The machine a run's tags record; empty for a run logged before machines were recorded."""
    return {field: tags[f"{TAG_PREFIX}.{field}"] for field in FIELDS if f"{TAG_PREFIX}.{field}" in tags}
