"""Task registration, options and payload validation at enqueue (memory backend)."""

from datetime import UTC, datetime, timedelta
from typing import Annotated

import pytest
from pydantic import BaseModel, Field

from workhorse import (
    ConfigError,
    JobContext,
    JobState,
    PayloadError,
    UnknownTaskError,
    Workhorse,
)


class Email(BaseModel):
    to: str
    subject: str = "hi"


class Sent(BaseModel):
    ok: bool


@pytest.fixture
def app() -> Workhorse:
    return Workhorse("memory://")


def test_handler_signatures(app: Workhorse) -> None:
    @app.task
    async def nothing() -> None: ...

    @app.task
    def data_only(data: dict[str, int]) -> int:
        return 1

    @app.task
    async def both(data: Email, ctx: JobContext) -> None: ...

    @app.task
    async def ctx_only(ctx: JobContext) -> None: ...

    assert (nothing.takes_data, nothing.takes_ctx) == (False, False)
    assert (data_only.takes_data, data_only.takes_ctx, data_only.is_async) == (True, False, False)
    assert (both.takes_data, both.takes_ctx) == (True, True)
    assert (ctx_only.takes_data, ctx_only.takes_ctx) == (False, True)


def test_unknown_option_and_bad_values(app: Workhorse) -> None:
    with pytest.raises(TypeError):
        app.task(colour="red")  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="retries"):
        app.task(retries=-1)(lambda: None)
    with pytest.raises(ConfigError, match="invalid queue name"):
        app.task(queue="no spaces")(lambda: None)
    with pytest.raises(ConfigError, match="unknown option.*valid per-call options"):

        @app.task
        async def t() -> None: ...

        t.options(colour="red")


def test_duplicate_name_refused(app: Workhorse) -> None:
    @app.task(name="same")
    async def a() -> None: ...

    with pytest.raises(ConfigError, match="already registered"):

        @app.task(name="same")
        async def b() -> None: ...


async def test_unknown_task_lists_known(app: Workhorse) -> None:
    @app.task
    async def known_one() -> None: ...

    with pytest.raises(UnknownTaskError, match="known tasks: known_one"):
        await app.run("nope", {})
    with pytest.raises(UnknownTaskError):
        await app.enqueue("nope")


async def test_pydantic_payload_validated_at_enqueue(app: Workhorse) -> None:
    @app.task
    async def send(data: Email) -> Sent:
        return Sent(ok=True)

    handle = await send.enqueue(Email(to="a@b.c"))
    job = await app.get_job(handle.id)
    assert job is not None and job.data == {"to": "a@b.c", "subject": "hi"}
    await send.enqueue({"to": "x@y.z"})  # a dict that validates is fine
    with pytest.raises(PayloadError, match="invalid payload for task 'send'"):
        await send.enqueue({"subject": "no recipient"})
    assert send.typed_result({"ok": True}) == Sent(ok=True)


async def test_annotated_constraints_are_validated_at_enqueue(app: Workhorse) -> None:
    @app.task
    async def pay(cents: Annotated[int, Field(gt=0)]) -> str:
        return "ok"

    await pay.enqueue(5)
    with pytest.raises(PayloadError, match="greater than 0"):
        await pay.enqueue(0)


async def test_payload_refused_at_enqueue_loses_nothing(app: Workhorse) -> None:
    @app.task
    async def t(data: object) -> None: ...

    with pytest.raises(PayloadError, match="not JSON"):
        await app.enqueue("t", {"when": {1, 2}})
    app.configure(max_payload=100)
    with pytest.raises(PayloadError, match="cap"):
        await app.enqueue("t", "x" * 200)
    assert await app.counts() == {}


async def test_call_options_kept_apart_from_data(app: Workhorse) -> None:
    @app.task(priority=1, retries=2, timeout=5)
    async def t(data: dict[str, int]) -> None: ...

    h = await t.options(delay=60, priority=9, queue="other").enqueue({"delay": 1})
    job = await app.get_job(h.id)
    assert job is not None
    assert job.data == {"delay": 1}
    assert (job.queue, job.priority, job.state) == ("other", 9, JobState.SCHEDULED)
    assert job.max_attempts == 3 and job.timeout == 5
    at = datetime.now(UTC) + timedelta(hours=1)
    h2 = await app.enqueue("t", {}, at=at, retries=0, timeout=timedelta(seconds=2))
    job2 = await app.get_job(h2.id)
    assert job2 is not None
    assert abs((job2.run_at - at).total_seconds()) < 0.01
    assert job2.max_attempts == 1 and job2.timeout == 2
    with pytest.raises(ConfigError, match="timezone-aware"):
        await app.enqueue("t", {}, at=datetime.now())


async def test_enqueue_many_one_call(app: Workhorse) -> None:
    @app.task
    async def t(data: int) -> None: ...

    handles = await t.enqueue_many(range(5))
    assert len({h.id for h in handles}) == 5
    assert (await app.counts())["default"]["queued"] == 5
    with pytest.raises(PayloadError):
        await t.enqueue_many([1, "two"])
    assert (await app.counts())["default"]["queued"] == 5  # all or nothing


def test_process_runtime_needs_a_module_level_function(app: Workhorse) -> None:
    def inner() -> None: ...

    with pytest.raises(ConfigError, match="module level"):
        app.add_task(inner, runtime="process")
    with pytest.raises(ConfigError, match="command"):
        app.add_task(inner, runtime="command")
