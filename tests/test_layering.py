"""Layering: the engine imports no model, baseline or task except through registries.

``benchmark.{engine,metrics,data,codecs,probes,report,training}`` may name a model, a baseline
or a task only in a registry *string* (``"baselines.identity:IdentityCodec"``), resolved at run
time. An ``import`` of ``baselines``, ``tasks`` or ``benchmark.music2latent`` anywhere in those
modules (top level, inside a function, under ``TYPE_CHECKING``, relative, or a literal
``importlib.import_module(...)``) is a violation.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Engine packages (or modules) of ``benchmark/`` that must stay model-agnostic.
LAYERS = ("engine", "metrics", "data", "codecs", "probes", "report", "training")
#: What they may not import.
FORBIDDEN = ("baselines", "tasks", "benchmark.music2latent")


def layer_files(root: Path = ROOT) -> list[Path]:
    """Every ``.py`` file of the layers (a layer may be a package or a module; missing ones
    are skipped)."""
    files: list[Path] = []
    for name in LAYERS:
        package, module = root / "benchmark" / name, root / "benchmark" / f"{name}.py"
        if package.is_dir():
            files.extend(sorted(package.rglob("*.py")))
        if module.is_file():
            files.append(module)
    return files


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(source: str, module: str, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``source`` (module ``module``).

    ``from a import b`` yields ``a`` and ``a.b`` (``b`` may be a submodule); relative imports
    are made absolute; ``importlib.import_module("x")`` / ``__import__("x")`` with a literal
    name count as imports of ``x``.
    """
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                base_name = ".".join(base + ([node.module] if node.module else []))
            else:
                base_name = node.module or ""
            yield node.lineno, base_name
            for alias in node.names:
                yield node.lineno, f"{base_name}.{alias.name}"
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__"):
                yield node.lineno, node.args[0].value


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """``"module:line imports name"`` for every forbidden import (one per statement)."""
    found: dict[int, str] = {}
    for line, name in imported_names(source, module, is_package):
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
            found[line] = min(found.get(line, name), name, key=len)
    return [f"{module}:{line} imports {name}" for line, name in sorted(found.items())]


def test_engine_imports_no_model_baseline_or_task():
    files = layer_files()
    # the check must look at the real packages, not pass on an empty list
    assert {module_name(f).split(".")[1] for f in files} >= {"metrics", "data", "codecs", "probes",
                                                              "training"}
    found = []
    for path in files:
        found += violations(path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py")
    assert not found, ("the engine must reach models, baselines and tasks through registry strings "
                       "('module:attr', resolved by benchmark.lazy.resolve), not imports:\n  "
                       + "\n  ".join(found))


@pytest.mark.parametrize("source", [
    "import baselines.identity",
    "from baselines.autoencoders import vae",
    "from tasks import create_task",
    "import tasks.key as key",
    "from benchmark.music2latent.codec import Music2LatentCodec",
    "from benchmark import music2latent",
    "from ...music2latent import recipe",  # relative, from benchmark/training/x/y.py
    "def f():\n    from tasks import create_task\n    return create_task",
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import baselines",
    "import importlib\nimportlib.import_module('benchmark.music2latent.recipe')",
])
def test_the_check_catches_every_form_of_import(source):
    assert violations(source, "benchmark.training.sub.mod"), source


@pytest.mark.parametrize("source", [
    'REGISTRY = {"vae": "baselines.autoencoders.vae:VAECodec"}',  # registry strings are fine
    "from benchmark.training.tasks import TASKS",  # a module named tasks inside the engine
    "from .tasks import TASKS",
    "from benchmark.lazy import resolve\nresolve({}, 'tasks:create_task', 'task', ValueError)",
    "import benchmark.music2latent_like",
])
def test_the_check_allows_registry_strings_and_engine_modules(source):
    assert violations(source, "benchmark.training.command") == []


def test_relative_imports_resolve_from_the_package():
    names = [name for _, name in imported_names("from .. import music2latent", "benchmark.training.tasks")]
    assert names == ["benchmark", "benchmark.music2latent"]
    assert violations("from .. import music2latent", "benchmark.training.tasks")
    assert violations("from . import music2latent", "benchmark", is_package=True)
