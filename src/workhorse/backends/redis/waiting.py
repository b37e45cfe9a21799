"""The Redis backend's waits: idle workers block on a queue's wake-up list, callers waiting
for results on the pub/sub channel of finished jobs."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Collection, Sequence
from typing import Any

from workhorse.backends.redis.cluster import ClusterWire
from workhorse.backends.redis.core import WHERE_CAP, RedisCore, log
from workhorse.backends.redis.records import decode_leases, decode_published
from workhorse.backends.redis.wire import NoScript, ReplyError, Wire
from workhorse.job import Job, Lease, Outcome

_HINT_AGE = 0.5  # seconds a claim's idle hint stands in for a peek
_EPOCH_EVERY = 1.0  # seconds between idle workers' checks of the epoch mark
# Seconds a lease handed over with a wake-up (wait_claim) lasts until its worker takes it
# up: a stopped worker's pop still gets the token, and must not hold jobs for a full lease.
HANDOVER = 2.0


def _renew_args(leases: Sequence[Lease]) -> list[Any]:
    args: list[Any] = []
    for lease in leases:
        args += (lease.job_id, lease.token, repr(float(lease.lease)))
    return args


def _moved(error: ReplyError) -> bool:
    """A cluster node's answer that the key's slot is served elsewhere."""
    return str(error).startswith(("MOVED", "ASK"))


class RedisWaiting(RedisCore):
    """wait_for_jobs and wait_finished, on the state RedisCore holds."""

    async def wait_for_jobs(self, queues: Sequence[str], timeout: float) -> None:
        if not queues or timeout <= 0:
            return
        peeks = self._idle_hints(queues)
        if peeks is None:
            peeks = await self._call_many([("peek", self._q(q), ()) for q in queues])
        if time.monotonic() >= self._epoch_due:
            self._epoch_due = time.monotonic() + _EPOCH_EVERY
            await self._check_epoch()
        wake_keys = []
        due_key = None  # the wake list of the queue whose scheduled job is due first
        for q, (paused, due, wait) in zip(queues, peeks, strict=True):
            wake_keys.append(self._q(q) + "wake")
            if paused:
                continue
            if due:
                return
            if wait and float(wait) < timeout:
                timeout, due_key = float(wait), wake_keys[-1]
        if timeout <= 0.001:
            return
        nudge = None if due_key is None else asyncio.ensure_future(self._nudge(due_key, timeout))
        try:
            await self._block(wake_keys, timeout)
        finally:
            if nudge is not None:
                nudge.cancel()

    async def wait_claim(
        self, queue: str, worker: str, limit: int, lease: float, timeout: float
    ) -> list[Lease] | None:
        """Block as ``wait_for_jobs`` does, with the claim pipelined behind the pop on the
        same connection: the server runs it the moment a wake-up token (or the timeout)
        ends the pop, so a woken worker has its jobs one round trip sooner. None: nothing
        claimed, claim next (a job is due now).

        The server runs that claim whether or not this process is there to read its reply
        (stopped, cut off, its loop held), so its leases are a handover: they last at most
        HANDOVER seconds and count no stall when they expire, until the worker takes them
        up with a renew, sent here before any of the jobs starts."""
        if timeout <= 0:
            return None
        qk = self._q(queue)
        hints = self._idle_hints([queue])
        paused, due, wait = hints[0] if hints else (await self._call_many([("peek", qk, ())]))[0]
        if time.monotonic() >= self._epoch_due:
            self._epoch_due = time.monotonic() + _EPOCH_EVERY
            await self._check_epoch()
        if due and not paused:
            return None
        wake_key = qk + "wake"
        timed = not paused and wait and float(wait) < timeout
        if timed:
            timeout = float(wait)
        if timeout <= 0.001:
            return None
        await self._list_queues([queue])  # as claim() does
        base = os.urandom(8).hex() + "."
        claim = self._eval("claim", qk, (worker, limit, repr(float(lease)), base, HANDOVER))
        nudge = asyncio.ensure_future(self._nudge(wake_key, timeout)) if timed else None
        sent = time.monotonic()
        try:
            _, reply = await self._pop([wake_key], timeout, claim)
        except BaseException as exc:
            # The claim may have run just before: its call id answers what it leased (or
            # claims now); a cancelled wait gives those jobs back, a broken one runs them.
            cancelled = not isinstance(exc, Exception)
            found = await asyncio.shield(self._claim_again(claim, queue, cancelled))
            if cancelled:
                raise
            return await self._take_up(queue, found, sent)
        finally:
            if nudge is not None:
                nudge.cancel()
        if isinstance(reply, NoScript):
            await self._load_scripts(self._conn())
            return None  # it never ran: the worker claims next
        if isinstance(reply, ReplyError) and _moved(reply):
            return None  # the pop said where the slot went; the routed claim follows it
        if isinstance(reply, Exception):
            raise reply
        jobs, idle = reply
        self._idle[queue] = (time.monotonic(), idle)
        return await self._take_up(queue, decode_leases(queue, jobs), sent)

    async def _take_up(self, queue: str, leases: list[Lease], sent: float) -> list[Lease]:
        """Renew the leases a wait's claim handed over, which marks them taken up. Sent
        now, ahead of the jobs, and not waited for while no lease can have ended yet (the
        claim ran after ``sent``); later, the jobs whose lease ended are left out: another
        worker may run them by now."""
        if not leases:
            return leases
        renew = self._call("renew", self._q(queue), *_renew_args(leases))
        if time.monotonic() - sent < min(HANDOVER, *(x.lease for x in leases)) / 2:
            task = asyncio.ensure_future(renew)
            self._taking_up.add(task)
            task.add_done_callback(self._taken_up)
            return leases
        codes = await renew
        kept = [x for x, code in zip(leases, codes, strict=True) if code != 0]
        if len(kept) < len(leases):
            log.warning(
                "%d job(s) handed over as this worker woke were given to another worker "
                "before it took them up (was the process stopped?); not running them",
                len(leases) - len(kept),
            )
        return kept

    def _taken_up(self, task: asyncio.Future[Any]) -> None:
        self._taking_up.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The jobs run anyway; their lease is renewed (or found lost) as usual.
            log.debug("taking up handed-over leases failed", exc_info=task.exception())

    async def _claim_again(
        self, claim: tuple[Any, ...], queue: str, give_back: bool
    ) -> list[Lease]:
        """A pipelined claim sent again by its call id, on the shared connection. Given
        back, its jobs return to their queue at once and the attempt does not count (as a
        worker's shutdown does with jobs it has not started)."""
        wire = self._conn()
        try:
            jobs, _ = await wire.call(*claim)
        except NoScript:
            await self._load_scripts(wire)
            jobs, _ = await wire.call(*claim)
        leases = decode_leases(queue, jobs)
        if give_back and leases:
            await self.finish([(lease, Outcome("retry", refund=True)) for lease in leases])
            return []
        return leases

    async def _block(self, wake_keys: Sequence[str], timeout: float) -> None:
        """Block until a wake-up token shows on one of ``wake_keys``, or ``timeout``."""
        if not isinstance(self._conn(), ClusterWire) or len(wake_keys) == 1:
            await self._pop(wake_keys, timeout)
            return
        # A cluster: each queue has its own slot, so a pop each, on the node that holds it.
        pops = [asyncio.ensure_future(self._pop([key], timeout)) for key in wake_keys]
        try:
            done, _ = await asyncio.wait(pops, return_when=asyncio.FIRST_COMPLETED)
            for pop in done:
                pop.result()
        finally:
            for pop in pops:
                pop.cancel()  # its connection is closed: the server ends that pop
            await asyncio.gather(*pops, return_exceptions=True)

    async def _pop(self, keys: Sequence[str], timeout: float, *then: Any) -> list[Any]:
        """BLPOP on ``keys`` and ``then`` (commands run the moment it ends), on a connection
        of its own: a blocked one can carry nothing else. The server bounds the wait; the
        client's own bound covers a silent network. Replies in order, errors not raised."""
        wire = await self._blocker(keys[0])
        try:
            replies = await wire.behind_block(
                [("BLPOP", *keys, round(timeout, 3)), *then], timeout + 5
            )
        except BaseException:
            await wire.close()  # cancelled or broken mid-wait: its replies would come later
            raise
        self._idle_blockers.append(wire)
        popped = replies[0]
        if isinstance(popped, ReplyError):
            cluster = self._conn()
            if _moved(popped) and isinstance(cluster, ClusterWire):
                await cluster.follow(keys[0])
            else:
                raise popped
        return replies

    async def _blocker(self, key: str) -> Wire:
        """An idle blocking connection, or a new one: to the server, or on a cluster to the
        node that holds ``key``'s slot (a pop there ends when the key's cancel closes it;
        redis-py's own cluster connections did not always end one on a cancel)."""
        wire = self._conn()
        if not isinstance(wire, ClusterWire):
            return self._idle_blockers.pop() if self._idle_blockers else self._new_wire()
        host, port = await wire.node_of(key)
        for i, idle in enumerate(self._idle_blockers):
            if (idle.host, idle.port) == (host, port):
                return self._idle_blockers.pop(i)
        assert self._cluster is not None
        return Wire(self._cluster.node_url(host, port), self._safe, self._call_timeout)

    async def _nudge(self, wake_key: str, after: float) -> None:
        """Push a wake-up token once a scheduled job is due. Redis ends a blocking pop's
        timeout on its clock tick (every 100 ms at the default hz 10), not when asked, so
        the pop's own timeout would start the job up to 100 ms late."""
        await asyncio.sleep(after)
        await asyncio.shield(self._push_token(wake_key))  # a cancel must not cut a reply

    async def _push_token(self, wake_key: str) -> None:
        try:
            await self._conn().call("RPUSH", wake_key, "1")
        except Exception:  # the pop's own timeout still ends the wait
            log.debug("could not push a wake-up token to %s", wake_key, exc_info=True)

    def _idle_hints(self, queues: Sequence[str]) -> list[Any] | None:
        """(paused, due, wait) of each queue as its claim of a moment ago left it, or None
        (then a peek asks). A claim reports what a peek would, and is as good: when nothing
        was due it dropped the wake-up tokens, and anything that makes a job ready since
        (enqueue, retry, reclaim, resume) pushes one, which the blocking pop then finds."""
        hints = []
        now = time.monotonic()
        for q in queues:
            found = self._idle.pop(q, None)  # once: a later wait asks afresh
            if found is None or now - found[0] > _HINT_AGE:
                return None
            paused, due, wait = found[1]
            if wait:  # seconds from the claim, not from now
                wait = max(0.0, float(wait) - (now - found[0]))
                due = due or not wait
            hints.append((paused, due, wait))
        return hints

    def _new_wire(self) -> Wire:
        # On a cluster: a node's own connection; a PUBLISH reaches every node.
        return Wire(self._node_url, self._safe, self._call_timeout)

    def _watch(self, job_id: str, sub: tuple[Wire, asyncio.Queue[Any]]) -> None:
        watched = self._watched
        if len(watched) >= WHERE_CAP:
            for old in list(watched)[: WHERE_CAP // 2]:
                del watched[old]
        watched[job_id] = sub

    async def wait_finished(self, ids: Collection[str], timeout: float) -> list[Job]:
        wanted = set(ids)
        if not wanted:
            return []
        # Records published while a call waited for other ids: finished, so final.
        done = [self._recent.pop(i) for i in wanted if i in self._recent]
        if done:
            for job in done:
                self._watched.pop(job.id, None)
            return done
        async with self._sub_lock:
            messages = await self._subscribed() if timeout > 0 else None
            # Subscribed first, then looked (and the unfinished watched): a finish in
            # between is still heard. Jobs watched at enqueue while this subscription was
            # up need no look: their finish is published to it.
            todo = [i for i in wanted if messages is None or self._watched.get(i) is not self._sub]
            if todo:
                done = await self._fetch(todo, "2" if messages is not None else "1")
                if done or messages is None:
                    return done
            assert messages is not None
            try:
                async with asyncio.timeout(timeout):
                    while True:
                        item = await messages.get()
                        if isinstance(item, Exception):
                            raise item
                        if item[0] != b"message":
                            continue
                        for job in self._parse_published(item[2]):
                            self._watched.pop(job.id, None)  # finished: nothing to watch
                            if job.id in wanted:
                                done.append(job)
                            else:
                                self._keep_recent(job)
                        # Also on a miss: the caller may wait for new ids by now.
                        return done
            except TimeoutError:
                for i in wanted:  # the next call looks again, as a poll would
                    self._watched.pop(i, None)
                return []
            except BaseException:
                # A broken subscription (server restart): start a fresh one next time,
                # and look at every id again (its finish may have gone unheard).
                sub, self._sub = self._sub, None
                self._watched.clear()
                if sub is not None:
                    await sub[0].close()
                raise

    def _keep_recent(self, job: Job) -> None:
        recent = self._recent
        if len(recent) >= 1000:
            del recent[next(iter(recent))]
        recent[job.id] = job

    def _parse_published(self, raw: bytes) -> list[Job]:
        jobs = decode_published(raw)
        for job in jobs:
            self._remember(job.id, job.queue)
        return jobs

    async def _subscribed(self) -> asyncio.Queue[Any]:
        if self._sub is None:
            self._conn()
            wire = self._new_wire()
            queue: asyncio.Queue[Any] = asyncio.Queue()
            try:
                proto = await wire.connect()
                proto.push = queue.put_nowait
                await wire.call("SUBSCRIBE", self._g + "finished")
            except BaseException:
                await wire.close()
                raise
            self._sub = (wire, queue)
            self._watched.clear()
        return self._sub[1]
