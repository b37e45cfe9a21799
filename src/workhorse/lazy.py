"""Names a package resolves on first use (PEP 562): what an app does not use, it does not
import (flows and hooks: 15 modules, ~0.8 MB for an app without them)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def names(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: each name imported from the module
    ``homes`` gives for it (relative to the package when it starts with a dot)."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(home, package), name)

    return __getattr__
