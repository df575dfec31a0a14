"""Tasks and methods from other packages: each named in an entry-point group (`grokbench.tasks`,
`grokbench.methods`) of an installed distribution, loaded when the registry is built. The tasks load first (the
methods' interface imports them), so a task's module must not import `grokbench.methods`."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from typing import Any

log = logging.getLogger("grokbench.plugins")


def plugged_in(group: str, built_in: dict[str, Any]) -> dict[str, Any]:
    """`built_in` and the components of the entry-point `group`, by their `name`; a built-in name is not
    replaced."""
    registry = dict(built_in)
    for point in entry_points(group=group):
        component = point.load()
        if component.name in registry:
            log.warning("%s %s from %s is not loaded: grokbench has one of that name", group, point.name, point.value)
            continue
        registry[component.name] = component
    return registry
