"""Downstream tasks probed on frozen embeddings: one module per task.

:data:`TASKS` maps a task name to ``"module:Class"``; the class is imported only when the task
is created. A task from another package is named by its import path
(``"my_pkg.my_tasks:GenreTask"``). Adding a task = a new module with a
:class:`tasks.base.Task` subclass + one line here; the probe engine does not change.
"""

from __future__ import annotations

import importlib
from typing import Any

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

    target = TASKS.get(name, name)
    if ":" not in target:
        raise TaskError(f"unknown task {name!r}; known: {', '.join(available_tasks())} "
                        "(or give 'module:Class')")
    module, attr = target.split(":", 1)
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise TaskError(f"cannot import task {target!r}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise TaskError(f"{target!r} is not a tasks.base.Task subclass")
    return cls(**options)
