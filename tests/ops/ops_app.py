"""Tasks with known outcomes, for the operations tests' real worker processes."""

from __future__ import annotations

from typing import Any

from workhorse import JobContext, Workhorse


def make(**settings: Any) -> Workhorse:
    app = Workhorse(**settings)

    @app.task
    async def ok(data: dict[str, int]) -> int:
        return data["n"]

    @app.task
    async def boom() -> None:
        raise RuntimeError("boom")

    @app.task(retries=1, backoff=0)
    async def flaky(ctx: JobContext) -> str:
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return "second time lucky"

    return app


app = make()


def make_logging(**settings: Any) -> Workhorse:
    """A task that logs through the standard logging module, as users' code does."""
    import logging

    app = make(**settings)

    @app.task
    async def chatty(data: dict[str, str]) -> None:
        logging.getLogger("myproject").warning("charging %s", data["who"], extra={"cents": 5})

    return app


logging_app = make_logging()


def make_catalog(**settings: Any) -> Workhorse:
    """Tasks with a schedule, a singleton, limits and a runtime, for the catalog."""
    app = Workhorse(**settings)

    @app.task(cron="0 9 * * 1", queue="priority", singleton=True, timeout=30)
    async def weekly_report() -> None:
        """Mail the weekly report.

        More words that the catalog leaves out."""

    app.add_task(resize, runtime="process", rate="10/60s", concurrency=2, retries=3)
    return app


def resize(data: dict[str, str]) -> None:
    """Resize an image (a process runtime task must be defined at module level)."""


catalog_app = make_catalog()


def make_flow(**settings: Any) -> Workhorse:
    """A flow of three steps (an entry, one on an emitted trigger, one after a step with a
    wait), beside a plain task, for the catalog and the flow spans."""
    app = make(**settings)

    @app.task(flow="signup", entry=True, emits=["welcome"])
    async def register(data: dict[str, str], ctx: JobContext) -> str:
        assert ctx.flow is not None
        await ctx.flow.emit("welcome", {"who": data["who"]})
        return data["who"]

    @app.task(flow="signup", subscribes=["welcome"])
    async def send_welcome(data: dict[str, str]) -> str:
        return f"hello {data['who']}"

    @app.task(flow="signup", subscribes=["step:register"], wait={"delay": 0.05})
    async def follow_up(data: Any) -> None:
        return None

    return app


flow_app = make_flow()
