"""``python -m bench.flow_check_cg MODE K URL``: ``Engine.check`` on a running run, for
callgrind. The run's flow has three entry steps (an open flow): two run and complete,
the third waits on a queue no worker here takes, so each check answers None. MODE
``present``: K checks with every record there; ``purged``: K checks after the two
completed records were purged (a check then reads the run's event log); ``setup``: none.
Instructions per check are ``(MODE - setup) / K``, with the worker's timers out of the
way (the eighth pass's method, docs/profiles.md)::

    export PYTHONHASHSEED=0 WORKHORSE_FLOW_SWEEP_INTERVAL=100000 \\
        WORKHORSE_RECLAIM_INTERVAL=100000 WORKHORSE_HEARTBEAT_INTERVAL=100000
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python -m bench.flow_check_cg present 200 memory://   # then: setup 200
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from workhorse import Workhorse


async def main(mode: str, k: int, url: str) -> None:
    app = Workhorse(url, poll_interval=0.05)

    @app.task(name="a", flow="f", entry=True)
    async def a(d: Any) -> Any:
        return d

    @app.task(name="b", flow="f", entry=True)
    async def b(d: Any) -> Any:
        return d

    @app.task(name="c", flow="f", entry=True, queue="priority")
    async def c(d: Any) -> Any:
        return d

    async with app:
        engine = app.flows.engine

        def unchecked(outcome: Any, ctx: Any, written: bool) -> None:
            return None  # the steps' own checks are not what is counted

        async def no_sweep() -> int:
            return 0

        setattr(engine, "finished", unchecked)  # noqa: B010
        setattr(engine, "sweep", no_sweep)  # noqa: B010
        run = await app.flows.start("f", 1)
        await app.worker(concurrency=2, burst=True, queues=["default"]).run()
        if mode == "purged":
            assert await app.purge(states=["completed"], older_than=0) == 2
        if mode != "setup":
            for _ in range(k):
                assert await engine.check(run.id) is None
        print(mode, (await app.flows.get(run.id)).state, len(await app.flows.events(run.id)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
