"""Secrets out of sight: values of fields whose name contains a configured word."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MASK = "***"


class Redactor:
    def __init__(self, names: Iterable[str]) -> None:
        self.names = tuple(n.lower() for n in names if n)

    def hides(self, key: str) -> bool:
        low = key.lower()
        return any(n in low for n in self.names)

    def __call__(self, value: Any) -> Any:
        """A copy of ``value`` with every matching field's value replaced by ``***``."""
        if isinstance(value, dict):
            return {
                k: MASK if isinstance(k, str) and self.hides(k) else self(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self(v) for v in value]
        return value

    def restore(self, edited: Any, stored: Any) -> Any:
        """``edited`` (a redacted value an operator changed) with each hidden field still
        ``***`` given back its ``stored`` value, so editing a payload keeps its secrets."""
        if isinstance(edited, dict) and isinstance(stored, dict):
            return {
                k: stored[k]
                if v == MASK and isinstance(k, str) and self.hides(k) and k in stored
                else self.restore(v, stored.get(k))
                for k, v in edited.items()
            }
        if isinstance(edited, list) and isinstance(stored, list):
            return [
                self.restore(v, stored[i] if i < len(stored) else None)
                for i, v in enumerate(edited)
            ]
        return edited
