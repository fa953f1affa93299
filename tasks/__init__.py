"""Downstream tasks probed on frozen embeddings: one module per task.

:data:`TASKS` maps a task name to ``"module:Class"``; the class is imported only when the task
is created. A task from another package is named by its import path
(``"my_pkg.my_tasks:GenreTask"``). Adding a task = a new module with a
:class:`tasks.base.Task` subclass + one line here; the probe engine does not change.
"""

from __future__ import annotations

from typing import Any

from benchmark.lazy import resolve

TASKS: dict[str, str] = {
    "tagging": "tasks.tagging:TaggingTask",
    "key": "tasks.key:KeyTask",
    "instrument": "tasks.instrument:InstrumentTask",
    "pitch": "tasks.pitch:PitchTask",
}


def available_tasks() -> list[str]:
    return sorted(TASKS)


def create_task(name: str, **options: Any):
    """Instantiate task ``name`` (registry name or ``"module:Class"``) with ``options``."""
    from tasks.base import Task, TaskError

    cls = resolve(TASKS, name, "task", TaskError)
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise TaskError(f"{name!r} is not a tasks.base.Task subclass")
    return cls(**options)
