"""``python -m bench.redis_wire``: the client CPU of one command on the Redis backend's own
connection (``Wire``) and on ``redis.asyncio.Redis``, ``--callers`` at once, alternated.

python -m bench.redis_wire --url redis://127.0.0.1:6379/0 --rounds 3

The figure behind docs/decisions.md, "Redis: the standalone connection".
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as redis_asyncio

from workhorse.backends.redis.wire import Wire


async def _run(call: Callable[[], Awaitable[Any]], n: int, callers: int) -> tuple[float, float]:
    """Client CPU µs per command, and commands per second."""
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n // callers):
        await asyncio.gather(*(call() for _ in range(callers)))
    return (time.process_time() - c0) / n * 1e6, n / (time.perf_counter() - t0)


async def main(url: str, rounds: int, n: int, callers: int) -> None:
    wire = Wire(url, url)
    client = redis_asyncio.Redis.from_url(url, max_connections=callers)
    try:
        for _ in range(rounds):
            own = await _run(lambda: wire.call("EXISTS", "bench:none"), n, callers)
            lib = await _run(
                lambda: client.execute_command("EXISTS", "bench:none"),  # type: ignore[no-untyped-call]
                n,
                callers,
            )
            print(
                f"own connection: {own[0]:.1f} µs CPU/command, {own[1]:,.0f}/s | "
                f"redis-py: {lib[0]:.1f} µs CPU/command, {lib[1]:,.0f}/s"
            )
    finally:
        await client.aclose()
        await wire.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m bench.redis_wire", description=__doc__)
    p.add_argument("--url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--commands", type=int, default=20_000)
    p.add_argument("--callers", type=int, default=50)
    a = p.parse_args()
    asyncio.run(main(a.url, a.rounds, a.commands, a.callers))
