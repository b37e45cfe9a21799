"""``Idempotency-Key`` on enqueue: the first request with a key creates the job; every
other one with that key (concurrent, or a replay after a lost reply) gets the same id."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from workhorse.client import Client
from workhorse.http.errors import ApiError
from workhorse.http.models import Enqueued
from workhorse.task import Task

# Seconds a key is remembered: a client retrying a lost reply does so well within a day.
KEY_TTL = 86_400.0


def fingerprint(task: str, data: Any, options: dict[str, Any]) -> str:
    raw = orjson.dumps(
        {"task": task, "data": data, "options": options}, option=orjson.OPT_SORT_KEYS
    )
    return hashlib.sha256(raw).hexdigest()


async def enqueue_once(
    client: Client, task: Task[Any, Any], data: Any, options: dict[str, Any], key: str
) -> Enqueued:
    if not key or len(key) > 255:
        raise ApiError(400, "BadIdempotencyKey", "Idempotency-Key must be 1-255 characters")
    backend = await client.store()
    new = client.new_job(task, data, options)
    mark = "idem:" + hashlib.sha256(f"{task.name}\0{key}".encode()).hexdigest()
    value = orjson.dumps({"id": new.id, "fp": fingerprint(task.name, data, options)}).decode()
    if await backend.set_if_absent(mark, value, KEY_TTL):
        try:
            h = await client.submit(task, new, options)
        except BaseException:
            await backend.kv_delete(mark, value)  # nothing was created: the key is free again
            raise
        return Enqueued(id=h.id, task=h.task, queue=h.queue, status=h.status, state=str(h.state))
    seen = await backend.kv_get(mark)
    if seen is None:  # the first request failed and freed the key meanwhile
        return await enqueue_once(client, task, data, options, key)
    first = orjson.loads(seen)
    if first["fp"] != orjson.loads(value)["fp"]:
        raise ApiError(
            422,
            "IdempotencyKeyReused",
            "this Idempotency-Key was used with a different request (task, body or options); "
            "use a new key for a new request",
        )
    job = await client.get_job(first["id"])
    return Enqueued(
        id=first["id"],
        task=task.name,
        queue=new.queue if job is None else job.queue,
        status="duplicate",
        state="queued" if job is None else str(job.state),
        replayed=True,
    )
