"""Subscribing hooks: filters match as documented, and bad input is refused with the fix."""

from __future__ import annotations

import pytest

from workhorse import ConfigError, Event, Hook, JobEvent, Workhorse
from workhorse.hooks import HookSet


def handler(e: JobEvent) -> None:
    return None


def test_filters_are_glob_patterns_on_type_task_and_queue() -> None:
    hooks = HookSet()
    a = hooks.add("job.completed", handler, task="mail_*", name="a")
    b = hooks.add("job.*", handler, queue="prio*", name="b")
    c = hooks.add("*", handler, name="c")
    assert hooks.matching("job.completed", "mail_send", "default") == [a, c]
    assert hooks.matching("job.failed", "mail_send", "priority") == [b, c]
    assert hooks.matching("flow.started", None, None) == [c]  # no task: only unfiltered hooks
    assert hooks.matching("job.completed", "other", "default") == [c]


def test_app_on_returns_a_handle_and_decorates() -> None:
    app = Workhorse("memory://")
    hook = app.on("job.completed", handler, name="h")
    assert isinstance(hook, Hook)

    @app.on("job.failed", task="t")
    def on_failed(e: JobEvent) -> None:
        return None

    assert on_failed.__name__ == "on_failed"  # the decorator gives the function back
    assert [h.name for h in app.hooks.set] == ["h", f"{__name__}.{on_failed.__qualname__}"]
    assert app.off(on_failed) == 1
    assert hook.remove() is True
    assert len(app.hooks.set) == 0


def test_two_hooks_with_one_name_are_refused_naming_the_fix() -> None:
    app = Workhorse("memory://")
    app.on("job.completed", handler)
    with pytest.raises(ConfigError, match="give this one its own name="):
        app.on("job.failed", handler)


def test_local_hooks_go_to_the_in_process_bus() -> None:
    app = Workhorse("memory://")
    seen: list[str] = []
    app.on("job.completed", lambda e: seen.append(e.type), local=True)
    app.bus.emit(Event("job.completed", "j"))
    assert seen == ["job.completed"]
    assert len(app.hooks.set) == 0  # not a durable hook
    with pytest.raises(ConfigError, match="type and task only"):
        app.on("job.completed", handler, queue="q", local=True)


def test_bad_group_name_is_refused() -> None:
    app = Workhorse("memory://")
    with pytest.raises(ConfigError, match="hook group"):
        app.listener(group="../etc")
