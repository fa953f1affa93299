"""One error root: every error class of the packages derives from BenchmarkError; the CLI reports them."""

from __future__ import annotations

import importlib
import pkgutil
import types

import pytest

from benchmark import cli
from benchmark.codecs.protocol import CodecError
from benchmark.config import ConfigError
from benchmark.data.dataset import DatasetError
from benchmark.errors import BenchmarkError

PACKAGES = ("benchmark", "baselines", "tasks")


def _module_names() -> list[str]:
    """Every module of :data:`PACKAGES` (``__main__`` left out: importing it is harmless, but pointless).

    A subpackage whose ``__init__`` fails to import is still listed, so its test reports why.
    """
    names: list[str] = []
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        names.append(package_name)
        names += [info.name for info in pkgutil.walk_packages(package.__path__, f"{package_name}.",
                                                              onerror=names.append)]
    return sorted({n for n in names if not n.endswith(".__main__")})


MODULES = _module_names()


def _import_or_skip(name: str) -> types.ModuleType:
    """Import ``name``; skip only if what is missing is a third-party (optional) dependency."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing and missing not in PACKAGES:
            pytest.skip(f"{name} not checked: optional dependency {exc.name!r} is not installed")
        raise


def stray_errors(module: types.ModuleType) -> list[type]:
    """Exception classes defined in ``module`` whose name ends with ``Error`` but that do not
    derive from :class:`BenchmarkError`."""
    return [obj for obj in vars(module).values()
            if isinstance(obj, type) and issubclass(obj, Exception) and obj.__module__ == module.__name__
            and obj.__name__.endswith("Error") and not issubclass(obj, BenchmarkError)]


@pytest.mark.parametrize("name", MODULES)
def test_every_error_class_derives_from_benchmark_error(name):
    module = _import_or_skip(name)
    stray = stray_errors(module)
    assert not stray, (f"{name}: {', '.join(c.__name__ for c in stray)} must derive from "
                       "benchmark.errors.BenchmarkError (keep the built-in base second, e.g. "
                       "`class XError(BenchmarkError, ValueError)`)")


def test_the_check_finds_a_stray_error_class_and_the_known_ones():
    class StrayError(RuntimeError):
        pass

    class GoodError(BenchmarkError, RuntimeError):
        pass

    module = types.ModuleType("fake_plugin")
    for cls in (StrayError, GoodError, BenchmarkError):  # BenchmarkError: imported, not defined there
        if cls is not BenchmarkError:
            cls.__module__ = module.__name__
        setattr(module, cls.__name__, cls)
    assert [c.__name__ for c in stray_errors(module)] == ["StrayError"]
    # the walk reaches the modules that define the suite's errors
    assert {"benchmark.data.dataset", "benchmark.codecs.protocol", "benchmark.config", "benchmark.metrics.base",
            "tasks.base", "benchmark.probes.probe"} <= set(MODULES)


def test_errors_keep_their_builtin_base():
    assert issubclass(DatasetError, RuntimeError) and issubclass(CodecError, RuntimeError)
    assert issubclass(ConfigError, ValueError)


def test_cli_reports_any_benchmark_error_in_one_line(monkeypatch, capsys):
    def fails(args):
        raise CodecError("weights/model.pt: checkpoint not found; download it with scripts/get_weights.sh")

    monkeypatch.setattr(cli, "presets_command", fails)
    assert cli.main(["presets"]) == 2
    err = capsys.readouterr().err
    assert err == "error: weights/model.pt: checkpoint not found; download it with scripts/get_weights.sh\n"

    def bug(args):
        raise ZeroDivisionError("a bug keeps its traceback")

    monkeypatch.setattr(cli, "presets_command", bug)
    with pytest.raises(ZeroDivisionError):
        cli.main(["presets"])


def test_only_a_missing_third_party_dependency_skips_a_module(tmp_path, monkeypatch):
    (tmp_path / "needs_optional.py").write_text("import m2l_not_installed_xyz\n")
    (tmp_path / "broken_internal.py").write_text("import benchmark.no_such_module\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(pytest.skip.Exception, match="needs_optional.*m2l_not_installed_xyz"):
        _import_or_skip("needs_optional")
    with pytest.raises(ModuleNotFoundError, match="benchmark.no_such_module"):
        _import_or_skip("broken_internal")
