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
