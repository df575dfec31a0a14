"""The task registry: a task is one module exposing `TASK`; add it here to make it available, or, from outside the
package, name its `Task` instance in the `grokbench.tasks` entry-point group (`name = "package.module:TASK"`)."""

from grokbench.plugins import plugged_in
from grokbench.tasks import mnist, modarith, polynomial, xor
from grokbench.tasks.base import DataError, Task, TaskData

TASKS: dict[str, Task] = plugged_in(
    "grokbench.tasks", {module.TASK.name: module.TASK for module in (mnist, xor, modarith, polynomial)}
)

__all__ = ["TASKS", "DataError", "Task", "TaskData"]
