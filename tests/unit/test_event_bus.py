"""The in-process bus says which event types have a handler: the worker skips building
events nobody listens to, so a type must stop being wanted once its last handler left."""

from __future__ import annotations

from workhorse.events import EventBus
from workhorse.job import Event


def test_a_type_is_wanted_while_it_has_a_handler_and_not_after() -> None:
    bus = EventBus()
    seen: list[str | None] = []

    def handler(event: Event) -> None:
        seen.append(event.job_id)

    assert not bus.wants("job.started")
    bus.on("job.started", handler)
    assert bus.wants("job.started") and not bus.wants("job.completed")
    bus.emit(Event("job.started", "a"))
    bus.off("job.started", handler)
    assert not bus.wants("job.started")
    bus.on("*", handler)
    assert bus.wants("job.completed")
    bus.emit(Event("job.completed", "b"))
    bus.off("*", handler)
    assert not bus.wants("job.completed")
    assert seen == ["a", "b"]
