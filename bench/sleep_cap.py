"""``python -m bench.sleep_cap``: what "10 ms jobs at concurrency 100" can reach with no
store and no worker at all: 100 coroutines each awaiting ``asyncio.sleep(0.01)`` in a loop.

The physical cap is 10,000/s; the event loop's timers fall short of it (epoll waits in
whole milliseconds, rounded up, and each wake-up runs after the callbacks already due),
and so does any worker on that loop. Compare the worker's figure with this one, taken in
the same minutes."""

from __future__ import annotations

import asyncio
import os
import time


async def rate(slots: int = 100, seconds: float = 3.0) -> float:
    done = 0
    stop = time.perf_counter() + seconds

    async def slot() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await asyncio.sleep(0.01)
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(slot() for _ in range(slots)))
    return done / (time.perf_counter() - t0)


def main() -> None:
    for _ in range(3):
        got = asyncio.run(rate())
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"100 x asyncio.sleep(0.01) in a loop: {got:,.0f}/s (load average {load})")


if __name__ == "__main__":
    main()
