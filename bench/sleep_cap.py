"""``python -m bench.sleep_cap``: what "10 ms jobs at concurrency 100" can reach with no
store and no worker at all: 100 coroutines each awaiting ``asyncio.sleep(0.01)`` in a loop,
on asyncio and (when installed) on uvloop.

The physical cap is 10,000/s; the event loop's timers fall short of it (epoll waits in
whole milliseconds, rounded up, and each wake-up runs after the callbacks already due),
and so does any worker on that loop. Each line also gives how long one 10 ms sleep lasted
on average, alone (one coroutine: the timer's own overshoot) and among the 100, so the
gap can be split into the timer's rounding and the loop's turn. Compare the worker's
figure with this one, taken in the same minutes."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import time
from collections.abc import Callable, Coroutine
from typing import Any

Runner = Callable[[Coroutine[Any, Any, Any]], Any]


async def rate(slots: int = 100, seconds: float = 3.0) -> tuple[float, float]:
    """Sleeps a second over ``slots`` coroutines, and the mean length of one in ms."""
    done = 0
    slept = 0.0
    stop = time.perf_counter() + seconds

    async def slot() -> None:
        nonlocal done, slept
        while (t := time.perf_counter()) < stop:
            await asyncio.sleep(0.01)
            slept += time.perf_counter() - t
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(slot() for _ in range(slots)))
    return done / (time.perf_counter() - t0), slept / done * 1000


def loops() -> dict[str, Runner]:
    found: dict[str, Runner] = {"asyncio": asyncio.run}
    if importlib.util.find_spec("uvloop") is not None:
        import uvloop

        found["uvloop"] = uvloop.run
    return found


def main() -> None:
    for _ in range(3):
        for name, run in loops().items():
            _, alone = run(rate(1, 1.0))
            got, among = run(rate())
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            print(
                f"{name}: 100 x sleep(0.01) in a loop: {got:,.0f}/s; one sleep lasts "
                f"{alone:.2f} ms alone, {among:.2f} ms among 100 (load average {load})"
            )


if __name__ == "__main__":
    main()
