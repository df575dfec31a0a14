"""What the Ray cluster offers a trial: the nodes that fit one, and whether an autoscaler adds more.

Shared by the sweep's start (`cluster`) and its pre-flight (`doctor`), which both ask it and import it one way.
"""

from __future__ import annotations

from pathlib import Path

AUTOSCALER_CONFIG = Path("~/ray_bootstrap_config.yaml")  # `ray up` leaves it on the head


def nodes_fitting(cpus: float, gpus: float) -> list[dict]:
    """The alive nodes with at least `cpus` CPUs and `gpus` GPUs."""
    import ray

    return [
        n
        for n in ray.nodes()
        if n["Alive"] and n["Resources"].get("CPU", 0) >= cpus and n["Resources"].get("GPU", 0) >= gpus
    ]


def autoscaling() -> bool:
    """On the head of a `ray up` cluster: worker nodes come on demand."""
    return AUTOSCALER_CONFIG.expanduser().is_file()
