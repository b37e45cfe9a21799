"""Job records of the Redis backend: a hash (short field names) decoded to a Job, and the
salvage of one that does not decode (quarantine)."""

from __future__ import annotations

from typing import Any

from workhorse import codec
from workhorse.backends import loglines
from workhorse.job import MAX_STALLS, Job, JobState, Lease, to_datetime

_STATE_NAMES = frozenset(s.value.encode() for s in JobState)

_LABELS = {
    b"d": "data", b"pg": "progress", b"res": "result", b"e": "error", b"lg": "logs",
    b"s": "state", b"t": "task", b"q": "queue", b"c": "created_at", b"r": "run_at",
    b"p": "priority", b"a": "attempts", b"m": "max_attempts", b"to": "timeout",
    b"st": "started_at", b"f": "finished_at", b"x": "lease_expires_at", b"sl": "stalls",
    b"ms": "max_stalls",
}  # fmt: skip


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode()


def _float(raw: bytes | None) -> float | None:
    return None if raw is None or raw == b"" else float(raw)


def _json(raw: bytes | None) -> Any:
    return None if raw is None or raw == b"" else codec.loads(raw)


# Hash fields holding JSON, with the names errors use for them.
_JSON_FIELDS = ((b"d", "data"), (b"pg", "progress"), (b"res", "result"), (b"e", "error"),
                (b"lg", "logs"))  # fmt: skip
_JSON_NAMES = frozenset(f for f, _ in _JSON_FIELDS)
UNDECODABLE = (KeyError, ValueError, TypeError, IndexError, AttributeError)


def quarantined(error: Any) -> bool:
    return isinstance(error, dict) and error.get("type") == "Quarantined"


def salvage(rec: list[Any]) -> tuple[Job, dict[bytes, str]]:
    """A record ``decode_job`` refused, read as far as it goes: the fields that do not decode
    are left out (None) and returned with the reason."""
    flat = rec[2]
    h: dict[bytes, bytes] = dict(zip(flat[::2], flat[1::2], strict=False))
    bad: dict[bytes, str] = {}
    fixed = dict(h)
    for field, _ in _JSON_FIELDS:
        if field in h and h[field] != b"":
            try:
                codec.loads(h[field])
            except ValueError as exc:
                bad[field] = str(exc)
                fixed[field] = b"null"
    state = rec[1]
    if state not in _STATE_NAMES:
        bad[b"s"] = f"unknown state {state!r}"
        state = b"failed"
    for field, default in ((b"t", b"?"), (b"q", b"?"), (b"c", b"0"), (b"r", b"0")):
        if field not in h:
            bad[field] = "missing"
            fixed[field] = default
    for field in (b"c", b"r", b"p", b"a", b"m", b"to", b"st", b"f", b"x", b"sl", b"ms"):
        if fixed.get(field):
            try:
                float(fixed[field])
            except ValueError:
                bad[field] = f"not a number: {fixed[field][:50]!r}"
                fixed[field] = b"0"
    flat = [x for kv in fixed.items() for x in kv]
    try:
        return decode_job([rec[0], state, flat]), bad
    except UNDECODABLE as exc:  # a last resort: the id alone is certain
        bad[b"?"] = str(exc)
        epoch = to_datetime(0.0)
        assert epoch is not None
        job = Job(rec[0].decode("utf-8", "replace"), "?", "?", JobState.FAILED, None, 0, 0, 1,
                  epoch, epoch)  # fmt: skip
        return job, bad


def decode_job(rec: list[Any]) -> Job:
    """A job from a script's record: [id, state, [field, value, ...]]."""
    flat = rec[2]
    h: dict[bytes, bytes] = dict(zip(flat[::2], flat[1::2], strict=True))
    lease_exp = h.get(b"x")
    return Job(
        id=rec[0].decode(),
        task=h[b"t"].decode(),
        queue=h[b"q"].decode(),
        state=JobState(rec[1].decode()),
        data=_json(h.get(b"d")),
        priority=int(h.get(b"p", 0)),
        attempts=int(h.get(b"a", 0)),
        max_attempts=int(h.get(b"m", 1)),
        created_at=to_datetime(float(h[b"c"])),  # type: ignore[arg-type]
        run_at=to_datetime(float(h[b"r"])),  # type: ignore[arg-type]
        started_at=to_datetime(_float(h.get(b"st"))),
        finished_at=to_datetime(_float(h.get(b"f"))),
        progress=_json(h.get(b"pg")),
        result=_json(h.get(b"res")),
        error=_json(h.get(b"e")),
        logs=loglines.shown(_json(h.get(b"lg")) or [], int(h.get(b"ld", 0))),
        timeout=_float(h.get(b"to")),
        worker=_text(h.get(b"w")),
        lease_expires_at=to_datetime(_float(lease_exp)),
        dedup_key=_text(h.get(b"k")),
        keep_for=_float(h.get(b"kf")),
        stalls=int(h.get(b"sl", 0)),
        max_stalls=int(h.get(b"ms", MAX_STALLS)),
    )


def decode_published(raw: bytes) -> list[Job]:
    """Records as notify_finished (lua/_prelude.lua) writes them."""
    jobs = []
    pos, end = 0, len(raw)
    while pos < end:
        colon = raw.index(b":", pos)
        count = int(raw[pos:colon])
        pos = colon + 1
        strings = []
        for _ in range(count):
            colon = raw.index(b":", pos)
            size = int(raw[pos:colon])
            pos = colon + 1
            strings.append(raw[pos : pos + size])
            pos += size
        try:
            job = decode_job([strings[0], strings[1], strings[2:]])
        except UNDECODABLE:
            job = salvage([strings[0], strings[1], strings[2:]])[0]
        jobs.append(job)
    return jobs


def quarantine_args(bad: dict[bytes, str]) -> tuple[str, list[bytes]]:
    """The reason and the fields whose raw bytes to keep, for quarantine.lua: only JSON
    fields wrong keeps their bytes; a broken hash keeps every field's."""
    reason = "; ".join(f"{_LABELS.get(f, f.decode())}: {why}" for f, why in bad.items())
    return reason, [] if any(f not in _JSON_NAMES for f in bad) else list(bad)


def decode_leases(queue: str, reply: list[Any]) -> list[Lease]:
    """The jobs of a claim.lua reply: ten fields per job."""
    leases = []
    for i in range(0, len(reply), 10):
        timeout = reply[i + 6]
        leases.append(
            Lease(
                reply[i].decode(),
                reply[i + 1].decode(),
                reply[i + 2].decode(),
                queue,
                reply[i + 3],
                reply[i + 4],
                int(reply[i + 5]),
                float(timeout) if timeout else None,
                float(reply[i + 7]),
                float(reply[i + 8]),
                int(reply[i + 9]),
            )
        )
    return leases
