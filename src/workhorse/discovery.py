"""Find tasks in a package or a folder: one task per module, the module's ``handler``
registered under the module's name, with options as module-level names."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import pkgutil
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from workhorse.errors import ConfigError
from workhorse.task import TASK_OPTIONS, Task

if TYPE_CHECKING:
    from workhorse.registry import Registry

# Declared by later features; a module that sets one must not have it silently ignored.
NOT_YET: tuple[str, ...] = ()
# Names other job-file formats use (@startupjs/worker, nuxt-processor, BullMQ), with ours,
# refused when the value has the shape that format gives it (else it is a helper's name).
FOREIGN: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "worker": ("queue", lambda v: isinstance(v, str)),
    "default": ("handler", callable),
    "config": ("module-level option names", lambda v: isinstance(v, dict)),
    "attempts": ("retries (attempts after the first)", lambda v: isinstance(v, int)),
    "retry": ("retries", lambda v: isinstance(v, int)),
}
# A plain value whose name is this close to an option's is taken for a misspelled option.
_TYPO_CUTOFF = 0.88
_VALUES = (str, int, float, bool, dict, list, tuple, type(None))


def _modules(target: str | Path | ModuleType) -> list[ModuleType]:
    if isinstance(target, ModuleType):
        package = target
    elif isinstance(target, Path) or "/" in str(target) or Path(str(target)).is_dir():
        folder = Path(target).resolve()
        if not folder.is_dir():
            raise ConfigError(f"discover: {folder} is not a folder")
        mods = []
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith("_"):
                continue
            name = f"workhorse_tasks_{abs(hash(str(folder))):x}.{path.stem}"
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise ConfigError(f"discover: cannot import {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            mods.append(module)
        return mods
    else:
        try:
            package = importlib.import_module(str(target))
        except ImportError as exc:
            raise ConfigError(f"discover: cannot import {target!r}: {exc}") from None
    if not hasattr(package, "__path__"):
        return [package]
    return [
        importlib.import_module(f"{package.__name__}.{info.name}")
        for info in pkgutil.iter_modules(package.__path__)
        if not info.name.startswith("_")
    ]


# A flow step's options, which the app (not the registry) takes: see workhorse.flows.
STEP_OPTIONS = ("flow", "entry", "subscribes", "emits", "wait", "triggers")


def discover(
    registry: Registry,
    target: str | Path | ModuleType,
    add: Callable[..., Task[Any, Any]] | None = None,
) -> list[Task[Any, Any]]:
    """``add`` registers each task (the app's ``add_task``, which also takes step options);
    without it the registry's, and a module with step options is refused."""
    found = []
    for module in _modules(target):
        handler = getattr(module, "handler", None)
        short = module.__name__.rsplit(".", 1)[-1]
        if not callable(handler):
            raise ConfigError(
                f"discover: module {module.__name__} has no handler() function; define one, "
                "or start the file name with '_' to keep it out of discovery"
            )
        _check_names(module)
        names = TASK_OPTIONS + STEP_OPTIONS if add is not None else TASK_OPTIONS
        options = {n: getattr(module, n) for n in names if hasattr(module, n)}
        found.append(
            (add or registry.add_task)(handler, name=getattr(module, "name", short), **options)
        )
    return found


def _check_names(module: ModuleType) -> None:
    """Refuse a module-level name that reads as an option workhorse would not apply."""
    pending = [n for n in NOT_YET if hasattr(module, n)]
    if pending:
        raise ConfigError(
            f"discover: module {module.__name__} sets {pending}, which this version of "
            "workhorse does not support yet"
        )
    for name, (ours, shaped) in FOREIGN.items():
        if hasattr(module, name) and shaped(getattr(module, name)):
            raise ConfigError(
                f"discover: module {module.__name__} sets {name!r}, which workhorse does not "
                f"read; use {ours} instead (valid options: {', '.join(TASK_OPTIONS)})"
            )
    for name, value in vars(module).items():
        known = name in TASK_OPTIONS or name in STEP_OPTIONS
        if known or name.startswith("_") or not isinstance(value, _VALUES):
            continue
        close = difflib.get_close_matches(name, TASK_OPTIONS, n=1, cutoff=_TYPO_CUTOFF)
        if close:
            raise ConfigError(
                f"discover: module {module.__name__} sets {name!r}; did you mean "
                f"{close[0]!r}? (rename a helper value to start with '_')"
            )
