"""The task registry: a task is one module exposing `TASK`; add it here to make it available."""

from grokbench.tasks import mnist, modarith, polynomial, xor
from grokbench.tasks.base import DataError, Task, TaskData

TASKS: dict[str, Task] = {module.TASK.name: module.TASK for module in (mnist, xor, modarith, polynomial)}

__all__ = ["TASKS", "DataError", "Task", "TaskData"]
