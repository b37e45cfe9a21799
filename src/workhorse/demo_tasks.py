"""The tasks the demo runs (``workhorse demo``). They are ordinary tasks: a worker runs them
with ``workhorse worker workhorse.demo_tasks:app --url ...``."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from pydantic import BaseModel, Field

from workhorse import JobContext, JobEvent, Workhorse

# No URL here: `workhorse demo` configures it before the app opens.
app = Workhorse()


class Crunch(BaseModel):
    steps: int = Field(20, ge=1, le=1000)
    pause: float = Field(0.1, ge=0, le=5)


@app.task(retries=3, backoff=0.2)
async def flaky(data: dict[str, str], ctx: JobContext) -> dict[str, object]:
    """Fails on its first two attempts (an upstream that is not ready), then succeeds."""
    if ctx.attempt < 3:
        ctx.log(f"attempt {ctx.attempt}: {data['service']} refused the connection", "warning")
        raise ConnectionError(f"{data['service']} is not ready (attempt {ctx.attempt})")
    ctx.log(f"attempt {ctx.attempt}: {data['service']} answered")
    return {"service": data["service"], "attempt": ctx.attempt}


@app.task(timeout=60)
async def crunch(data: Crunch, ctx: JobContext) -> dict[str, int]:
    """A slow job that reports its progress; ``data`` is validated by the pydantic model."""
    for step in range(1, data.steps + 1):
        await asyncio.sleep(data.pause)
        await ctx.progress(round(100 * step / data.steps))
    ctx.log("crunched", steps=data.steps)
    return {"steps": data.steps}


@app.task
def explode(data: dict[str, str]) -> dict[str, str]:
    """A sync task (it runs in a thread) that fails without a total: no retries, so it
    fails once, until retried with a payload that has one."""
    if "total" not in data:
        raise ValueError(f"cannot parse invoice {data['invoice']!r}: the total is missing")
    return {"invoice": data["invoice"], "booked": data["total"]}


@app.task(queue="batch")
async def square(n: int) -> int:
    """The quick job of the throughput section."""
    return n * n


# A flow: an order is received, then charged and reserved in parallel, then shipped once
# both are done (a join, its input keyed by trigger).
@app.task(flow="order", entry=True)
async def receive(order: dict[str, object]) -> dict[str, object]:
    return {"order": order["id"], "total": order["total"]}


@app.task(flow="order", subscribes=["step:receive"])
async def charge(received: dict[str, object]) -> dict[str, object]:
    await asyncio.sleep(0.1)
    return {"charged": received["total"]}


@app.task(flow="order", subscribes=["step:receive"])
async def reserve(received: dict[str, object]) -> dict[str, object]:
    await asyncio.sleep(0.1)
    return {"reserved": received["order"]}


@app.task(flow="order", subscribes=["step:charge", "step:reserve"])
async def ship(inputs: dict[str, dict[str, object]]) -> str:
    reserved, charged = inputs["step:reserve"]["reserved"], inputs["step:charge"]["charged"]
    return f"order {reserved} shipped, {charged} charged"


# The app's own database, apart from the job store: the hook below is its one writer.
# Where `workhorse demo` keeps it: next to its store, or in a temporary folder.
RESULTS_DB = Path(".workhorse") / "demo-results.db"
_db: dict[Path, sqlite3.Connection] = {}  # by resolved path: a demo run per folder
_db_lock = threading.Lock()  # sync hooks run in threads; one connection, one at a time


def results_db() -> sqlite3.Connection:
    """The results table's connection; call it holding ``_db_lock``."""
    path = RESULTS_DB.resolve()
    if path not in _db:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS squares (job_id TEXT PRIMARY KEY, n, square)")
        _db[path] = db
    return _db[path]


def reset_results(path: Path) -> None:
    """A fresh results table at ``path`` for a new tour."""
    global RESULTS_DB
    with _db_lock:
        RESULTS_DB = path
        for db in _db.values():
            db.close()
        _db.clear()
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{RESULTS_DB}{suffix}").unlink(missing_ok=True)


def stored_squares() -> int:
    with _db_lock:
        return int(results_db().execute("SELECT count(*) FROM squares").fetchone()[0])


@app.on("job.completed", task="square", name="demo.save_square")
def save_square(event: JobEvent) -> None:
    """The worker only computes; this hook, in the app's process, stores the result.
    Keyed by job id, so an event delivered twice (a listener killed mid-batch) writes once."""
    with _db_lock:
        db = results_db()
        db.execute(
            "INSERT OR REPLACE INTO squares VALUES (?, ?, ?)",
            (event.job_id, event.data, event.result),
        )
        db.commit()


class Greeting(BaseModel):
    name: str = Field(min_length=1, max_length=100)


@app.task(mode="http", http={"path": "/api/quote", "method": "POST", "auth": True})
async def quote(data: Greeting, ctx: JobContext) -> dict[str, str]:
    """An http task: an endpoint only, run in the server process under a job record."""
    ctx.log("quoting", name=data.name)
    return {"quote": f"{data.name}, the queue is patient."}


@app.task(mode="both")
async def greet(data: Greeting) -> dict[str, str]:
    """A both task: callable at /api/tasks/greet/call, or enqueued for a worker."""
    return {"greeting": f"hello, {data.name}"}
