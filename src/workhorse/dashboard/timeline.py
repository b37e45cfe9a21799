"""A run's timeline for its page: the run's events are read by run once per process, then
each reload reads only the events after the last one read (a live page reloads every
second)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field

from workhorse.client import Client
from workhorse.flows import Flows, RunInfo
from workhorse.job import Event

KEEP = 500  # newest events of a run the page lists
RUNS = 200  # runs whose timeline a process keeps


@dataclass(slots=True)
class _Seen:
    created_at: float  # a restart sets a new one: its timeline starts again
    cursor: int
    events: list[Event] = field(default_factory=list)


class Timelines:
    def __init__(self, client: Client, flows: Flows) -> None:
        self.client = client
        self.flows = flows
        self._seen: OrderedDict[str, _Seen] = OrderedDict()
        self._lock = asyncio.Lock()

    async def read(self, run_id: str) -> tuple[RunInfo, list[Event]]:
        """The run (``app.flows.get``) and its events, as ``app.flows.events`` reads them.
        LookupError when there is no such run."""
        async with self._lock:
            seen = self._seen.pop(run_id, None)
            info, fresh, cursor = await self._after(run_id, 0 if seen is None else seen.cursor)
            if seen is None or seen.created_at != info.created_at:
                if seen is not None:  # restarted since the last read: walk again
                    info, fresh, cursor = await self._after(run_id, 0)
                seen = _Seen(info.created_at, cursor)
            seen.events = (seen.events + fresh)[-KEEP:]
            seen.cursor = cursor
            self._seen[run_id] = seen
            while len(self._seen) > RUNS:
                self._seen.popitem(last=False)
            return info, list(seen.events)

    async def _after(self, run_id: str, after: int) -> tuple[RunInfo, list[Event], int]:
        # By run (Flows.events): the cost does not grow with other runs' events in the log.
        out = await self.flows.events(run_id, after=after)
        return await self.flows.get(run_id), out, out[-1].id if out else after
