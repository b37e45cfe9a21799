"""Hostile names. Queue, task and schedule names go into keys, SQL rows, URLs and CLI
arguments: every entry point refuses a bad one with a ConfigError. Keys that users choose
freely (dedup keys, singleton keys, kv keys) and ids that come from callers are stored or
looked up safely on every backend: nothing is injected, nothing else is touched."""

from __future__ import annotations

from typing import Any

import pytest

from workhorse import Workhorse
from workhorse.backends import Backend
from workhorse.errors import ConfigError
from workhorse.job import JobState, NewJob, Outcome, new_job_id
from workhorse.settings import Settings, check_name

HOSTILE_NAMES = {
    "long": "q" * 10_000,
    "unicode": "naïve-名前",
    "emoji": "jobs-🔥",
    "nul": "a\x00b",
    "newline": "a\nb",
    "cr": "a\rb",
    "tab": "a\tb",
    "space": "a b",
    "sql": "x'; DROP TABLE wh_jobs; --",
    "sql-quote": "' OR '1'='1",
    "lua": "]]..redis.call('FLUSHALL')..[[",
    "lua-concat": "x' .. redis.call('flushdb') .. '",
    "hash-tag": "{default}",
    "brace": "a}b",
    "glob": "*",
    "glob-q": "a?",
    "like": "a%",
    "dotdot": "..",
    "traversal": "../etc/passwd",
    "slash": "a/b",
    "dot-lead": ".hidden",
    "option": "--queues",
    "dash-lead": "-rf",
    "empty": "",
    "backslash": "a\\b",
    "dollar": "$1",
    "semicolon": "a;b",
}
NAME_IDS = list(HOSTILE_NAMES)
NAMES = list(HOSTILE_NAMES.values())

# What users may choose freely and the store must keep byte for byte.
HOSTILE_KEYS = [v for k, v in HOSTILE_NAMES.items() if k not in ("empty",)] + [
    "user:42",
    "k" * 10_000,
    '{"id": 1}',
    "\\x00",
    "%",
    "_",
    "[ab]",
]


@pytest.mark.parametrize("name", NAMES, ids=NAME_IDS)
def test_check_name_refuses(name: str) -> None:
    with pytest.raises(ConfigError, match="invalid queue name"):
        check_name(name, "queue")


@pytest.mark.parametrize("name", ["default", "emails.high", "tenant-1:reports", "a_b", "A9"])
def test_check_name_accepts_ordinary_names(name: str) -> None:
    assert check_name(name, "queue") == name


@pytest.mark.parametrize("value", [None, 1, b"default", ["default"]])
def test_check_name_refuses_what_is_not_a_string(value: Any) -> None:
    with pytest.raises(ConfigError, match="invalid queue name"):
        check_name(value, "queue")


@pytest.mark.parametrize("name", NAMES, ids=NAME_IDS)
async def test_every_entry_point_refuses_a_hostile_name(name: str) -> None:
    app = Workhorse("memory://")

    def fn(data: Any = None) -> None: ...

    if name:  # name="" means "the function's name"
        with pytest.raises(ConfigError):
            app.task(name=name)(fn)
    with pytest.raises(ConfigError):
        app.task(name="ok1", queue=name)(fn)
    assert "ok1" not in app.tasks
    ok = app.task(name="ok")(fn)
    with pytest.raises(ConfigError):
        await ok.enqueue(None, queue=name)
    with pytest.raises(ConfigError):
        await ok.options(queue=name).enqueue(None)
    with pytest.raises(ConfigError):
        await app.enqueue_many("ok", [1, 2], queue=name)
    with pytest.raises(ConfigError):
        app.worker(queues=[name])
    with pytest.raises(ConfigError):
        app.worker(queues={name: 1})
    with pytest.raises(ConfigError):
        Settings.load(env={}, queues=[name])
    if name:  # an empty variable means unset
        with pytest.raises(ConfigError):
            Settings.load(env={"WORKHORSE_QUEUES": f"default,{name}"})
    with pytest.raises(ConfigError):
        await app.pause(name)
    with pytest.raises(ConfigError):
        await app.resume(name)
    with pytest.raises(ConfigError):
        await app.add_schedule(name, "ok", "* * * * *")
    assert await app.paused() == set()
    assert await app.counts() == {}  # nothing was stored by any refusal
    assert await app.schedules() == []
    await app.close()


# -- keys and ids: stored safely on every backend -------------------------------------
def _refuses_nul(backend: Backend, key: str) -> bool:
    """PostgreSQL text cannot hold NUL: it refuses such a key with a ConfigError (the
    other stores keep it verbatim)."""
    return "\x00" in key and backend.url.startswith(("postgres://", "postgresql://"))


async def _canary(backend: Backend) -> str:
    (res,) = await backend.enqueue([NewJob(new_job_id(), "t", "default", b'{"canary": 1}')])
    return res.id


async def _canary_intact(backend: Backend, job_id: str) -> None:
    job = await backend.get(job_id)
    assert job is not None and job.data == {"canary": 1} and job.state is JobState.QUEUED
    counts = await backend.counts(["default"])
    assert counts["default"]["queued"] == 1


@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=lambda k: repr(k)[:24])
async def test_dedup_keys_are_stored_verbatim_and_inject_nothing(
    backend: Backend, key: str
) -> None:
    canary = await _canary(backend)
    if _refuses_nul(backend, key):
        with pytest.raises(ConfigError, match="NUL"):
            await backend.enqueue([NewJob(new_job_id(), "t", "q", b"1", dedup_key=key)])
        await _canary_intact(backend, canary)
        return
    first = NewJob(new_job_id(), "t", "q", b"1", dedup_key=key)
    again = NewJob(new_job_id(), "t", "q", b"2", dedup_key=key)
    near = NewJob(new_job_id(), "t", "q", b"3", dedup_key=key + "x")
    results = await backend.enqueue([first, again, near])
    assert [(r.id, r.created) for r in results] == [
        (first.id, True),
        (first.id, False),
        (near.id, True),
    ]
    job = await backend.get(first.id)
    assert job is not None and job.dedup_key == key and job.data == 1
    # The key is released with the job, and only that key.
    (lease,) = await backend.claim(["q"], "w", 1, 30.0)
    assert lease.job_id == first.id
    assert await backend.finish([(lease, Outcome("completed", result=b"null"))]) == [True]
    (res,) = await backend.enqueue([NewJob(new_job_id(), "t", "q", b"4", dedup_key=key)])
    assert res.created
    (res,) = await backend.enqueue([NewJob(new_job_id(), "t", "q", b"5", dedup_key=key + "x")])
    assert (res.id, res.created) == (near.id, False)
    await _canary_intact(backend, canary)


@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=lambda k: repr(k)[:24])
async def test_kv_keys_are_stored_verbatim_and_scan_takes_prefixes_literally(
    backend: Backend, key: str
) -> None:
    canary = await _canary(backend)
    await backend.kv_set("other:a", "1")
    await backend.kv_set("other:b", "2")
    if _refuses_nul(backend, key):
        for call in (
            backend.set_if_absent(key, "v"),
            backend.kv_set(key, "v"),
            backend.kv_get(key),
            backend.kv_extend({key: "v"}, 30),
            backend.counter_add(key, 1),
            backend.counter_add_many([("other:n", 1, None), (key, 1, None)]),
        ):
            with pytest.raises(ConfigError, match="NUL"):
                await call
        assert await backend.kv_scan("other:") == {"other:a": "1", "other:b": "2"}
        await _canary_intact(backend, canary)
        return
    assert await backend.set_if_absent(key, "v") is True
    assert await backend.set_if_absent(key, "w") is False
    assert await backend.kv_get(key) == "v"
    assert await backend.kv_get(key + "x") is None
    assert await backend.kv_extend({key: "v", key + "x": "v"}, 30) == {key}
    assert await backend.kv_extend({key: "w"}, 30) == set()
    assert await backend.kv_scan(key) == {key: "v"}
    # A prefix is a prefix, never a pattern: '*', '%', '_', '[ab]' match only themselves.
    assert await backend.kv_scan("other:" + key) == {}
    assert await backend.counter_add(key, 2) == 2
    assert await backend.counter_add(key, 3) == 5
    assert await backend.counter_add_many([(key, 1, None), (key + "x", 1, None)]) == [6, 1]
    assert await backend.kv_delete(key, "not-v") is False
    assert await backend.kv_delete(key) is True
    assert await backend.kv_scan("other:") == {"other:a": "1", "other:b": "2"}
    await _canary_intact(backend, canary)


@pytest.mark.parametrize("job_id", HOSTILE_KEYS, ids=lambda k: repr(k)[:24])
async def test_hostile_job_ids_find_nothing_and_change_nothing(
    backend: Backend, job_id: str
) -> None:
    canary = await _canary(backend)
    assert await backend.get(job_id) is None
    assert await backend.cancel(job_id) is None
    assert await backend.retry(job_id) is False
    assert await backend.wait_finished([job_id], 0) == []
    await _canary_intact(backend, canary)


@pytest.mark.parametrize("name", NAMES, ids=NAME_IDS)
async def test_reading_with_a_hostile_queue_or_task_shows_nothing(
    backend: Backend, name: str
) -> None:
    """The read side takes names as filters (the dashboard and REST API pass them on):
    a hostile one matches no job and reveals none of another queue's."""
    canary = await _canary(backend)
    assert await backend.query(queue=name) == []
    assert await backend.query(task=name) == []
    counts = await backend.counts([name])
    assert sum(counts.get(name, {}).values()) == 0
    assert set(counts) <= {name}
    await _canary_intact(backend, canary)
