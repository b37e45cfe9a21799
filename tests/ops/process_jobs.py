"""A task for runtime="process": it reads its own record from inside the child."""

from __future__ import annotations

from typing import Any

from workhorse import JobContext


async def own_record(data: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    ctx.log.warning("looking at myself")
    job = await ctx.job()
    return {
        "id": job.id,
        "data": job.data,
        "state": job.state.value,
        "attempts": job.attempts,
        "created": job.created_at.timestamp() > 0,
    }
