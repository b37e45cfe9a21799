"""Group commit for enqueue: concurrent callers' jobs share one write to the store.

A write costs about the same whatever it carries (a WAL flush on PostgreSQL, a message
and a script call on Redis), so a hundred request handlers enqueueing at once would wait
on a hundred writes in turn. Here a call that finds a lane free runs at once, alone (a
single producer pays nothing); calls made while every lane is busy wait and go together
in the next write, in arrival order, and each caller is answered only after that write
was applied (committed)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from workhorse.errors import BackendError

In = TypeVar("In")  # what a call sends (a job)
R = TypeVar("R")  # what it gets back for each (its enqueue result)


class GroupCommit(Generic[In, R]):
    """``lanes`` writes at most in flight for enqueue; ``cap`` jobs at most per shared
    write (a longer wait is split). ``unknown``: the errors after which the write may or
    may not have been applied (a lost connection, a timeout); each caller gets such an
    error as it would have alone. Any other error is a refusal that applied nothing (or,
    on a store whose enqueue is idempotent per job id, nothing that a resend would
    apply twice), so the shared write runs again in halves until the refused call is
    alone with its error; ``refused``: such errors among ``unknown``'s subclasses (the
    store's own error replies)."""

    def __init__(
        self,
        run: Callable[[Sequence[In]], Awaitable[list[R]]],
        lanes: int,
        unknown: tuple[type[BaseException], ...] = (BackendError,),
        cap: int = 1000,
        gather: bool = False,
        refused: tuple[type[BaseException], ...] = (),
    ) -> None:
        self._run = run
        self._unknown = unknown
        self._refused = refused
        self._lanes = lanes
        self._cap = cap
        # gather: a call goes alone only when no write is in flight, and calls made while
        # one is go together at the end of the event loop's turn: callers answered by the
        # same write resume in one turn, and would otherwise take the free lanes one by one.
        self._gather = gather
        self._kick_due = False
        self._busy = 0
        self._waiting: list[tuple[Sequence[In], asyncio.Future[list[R]]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, jobs: Sequence[In]) -> list[R]:
        free = self._busy == 0 if self._gather else self._busy < self._lanes
        if free and not self._waiting:
            self._busy += 1
            try:
                return await self._run(jobs)
            finally:
                self._busy -= 1
                if self._waiting:  # checked here: a lone producer's every call passes
                    self._next()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[R]] = loop.create_future()
        self._waiting.append((jobs, fut))
        if not self._gather:
            self._next()
        elif not self._kick_due:
            self._kick_due = True
            loop.call_soon(self._kick)
        return await fut

    def _kick(self) -> None:
        self._kick_due = False
        self._next()

    def _next(self) -> None:
        """Start a shared statement for the waiting calls if a lane is free."""
        while self._waiting and self._busy < self._lanes:
            batch: list[tuple[Sequence[In], asyncio.Future[list[R]]]] = []
            size = 0
            while self._waiting and (not batch or size + len(self._waiting[0][0]) <= self._cap):
                jobs, fut = self._waiting.pop(0)
                if not fut.done():  # a caller that gave up (cancelled) is left out
                    batch.append((jobs, fut))
                    size += len(jobs)
            if not batch:
                continue
            self._busy += 1
            task = asyncio.get_running_loop().create_task(self._shared(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _shared(self, batch: list[tuple[Sequence[In], asyncio.Future[list[R]]]]) -> None:
        try:
            await self._settle(batch)
        except BaseException as exc:  # cancelled (the backend closes): nobody waits forever
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(BackendError(f"enqueue interrupted: {exc!r}"))
            raise
        finally:
            self._busy -= 1
            self._next()

    async def _settle(self, batch: list[tuple[Sequence[In], asyncio.Future[list[R]]]]) -> None:
        if len(batch) == 1:
            await self._answer(batch[0])
            return
        try:
            results = await self._run([new for jobs, _ in batch for new in jobs])
        except Exception as exc:
            if isinstance(exc, self._unknown) and not isinstance(exc, self._refused):
                # The server did not answer or the connection broke: the outcome is
                # unknown, so every caller gets the error it would have got alone.
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                return
            # The server refused the write (one caller's bad input): each half runs again,
            # until the refused call is alone with its error.
            half = len(batch) // 2
            await self._settle(batch[:half])
            await self._settle(batch[half:])
            return
        k = 0
        for jobs, fut in batch:
            if not fut.done():
                fut.set_result(results[k : k + len(jobs)])
            k += len(jobs)

    def close(self) -> None:
        """Fail the calls still waiting and stop the shared statements in flight."""
        waiting, self._waiting = self._waiting, []
        for _, fut in waiting:
            if not fut.done():
                fut.set_exception(BackendError("the backend was closed"))
        for task in self._tasks:
            task.cancel()

    async def _answer(self, item: tuple[Sequence[In], asyncio.Future[list[R]]]) -> None:
        jobs, fut = item
        try:
            result = await self._run(jobs)
        except Exception as exc:
            if not fut.done():
                fut.set_exception(exc)
        else:
            if not fut.done():
                fut.set_result(result)
