"""The one lookup every registry uses: name -> ``"module:attribute"`` import path, imported lazily.

Registries (codecs, datasets, metrics, FAD backbones, tasks, training tasks) are plain dicts
from a name to an import path string (or an object). A name that is not registered is accepted
as an import path itself (``"my_pkg.my_module:MyThing"``), which is how external plugins are used.
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping


def resolve(registry: Mapping[str, Any], name: str, kind: str, error: type[Exception]) -> Any:
    """Return the object registered as ``name`` (or at import path ``name``).

    kind: what is being looked up, for messages (``"codec"``, ``"dataset"``...).
    error: exception class raised with a message that lists the known names.
    """
    target = registry.get(name, name)
    if not isinstance(target, str):
        return target
    if ":" not in target:
        raise error(f"unknown {kind} {name!r}; known: {', '.join(sorted(registry))} "
                    "(or give an import path 'package.module:Name')")
    module_name, attr = target.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise error(f"{kind} {name!r}: cannot import {module_name!r} ({exc}); is the package installed "
                    "and on PYTHONPATH?") from exc
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise error(f"{kind} {name!r}: module {module_name!r} has no attribute {attr!r}") from exc
