"""Drive the peers' children (in their own virtualenvs) and workhorse, in one run.

Each peer gets a store of its own: a Redis database number (1-7; db 0 is the tests') that
is flushed before and after each measurement, or for PostgreSQL a database of its own,
created per measurement and dropped afterwards. A database that holds keys this runner did
not put there is never flushed: the peer is reported as failed instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from bench.measure import ROOT, Servers

HERE = Path(__file__).resolve().parent
MARKER = "workhorse:bench-peers"  # set in each Redis db this runner may flush

# peer -> (backend, Redis db or None, virtualenv, requirements file)
PEERS: dict[str, tuple[str, int | None, str, str]] = {
    "arq": ("redis", 1, ".venv-peers-arq", "requirements-arq.txt"),
    "saq": ("redis", 2, ".venv-peers", "requirements.txt"),
    "rq": ("redis", 3, ".venv-peers", "requirements.txt"),
    "dramatiq": ("redis", 4, ".venv-peers", "requirements.txt"),
    "celery": ("redis", 5, ".venv-peers", "requirements.txt"),
    "huey": ("redis", 6, ".venv-peers", "requirements.txt"),
    "taskiq": ("redis", 7, ".venv-peers", "requirements.txt"),
    "procrastinate": ("postgres", None, ".venv-peers", "requirements.txt"),
}
DISTRIBUTION = {"taskiq": "taskiq-redis"}  # the version worth quoting, besides the library's
MEASUREMENTS = ("enqueue_one", "enqueue_bulk", "noop", "sleep", "roundtrip")
CHILD_TIMEOUT_S = 150.0


@dataclass(frozen=True, slots=True)
class PeerSizes:
    enqueue_one: int = 2_000
    enqueue_bulk: int = 10_000
    noop: int = 5_000
    sleep: int = 3_000
    roundtrip: int = 500
    warmup: int = 20


QUICK = PeerSizes(100, 1_000, 200, 100, 20, 3)
# Slow ones get fewer jobs so one repetition stays under a minute; rates are per second.
SMALLER = {
    "rq": PeerSizes(noop=3_000, sleep=600),  # one job at a time: 10 ms jobs run at < 100/s
    "procrastinate": PeerSizes(enqueue_one=1_000, noop=3_000),
}


def sizes_for(peer: str, quick: bool) -> PeerSizes:
    return QUICK if quick else SMALLER.get(peer, PeerSizes())


# -- virtualenvs --------------------------------------------------------------------------
def ensure_venv(venv: str, requirements: str, log: Any) -> str | None:
    """Create or update ``venv`` from ``requirements``; None when ready, else why not."""
    path = ROOT / venv
    req = HERE / requirements
    digest = hashlib.sha256(req.read_bytes()).hexdigest()
    stamp = path / ".bench-requirements"
    if stamp.exists() and stamp.read_text() == digest:
        return None
    log(f"installing {requirements} into {venv} ...")
    steps = [
        ["python3", "-m", "venv", str(path)],  # the system's interpreter, not .venv's
        [str(path / "bin" / "pip"), "install", "-q", "-r", str(req)],
    ]
    for cmd in steps:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            return f"`{' '.join(cmd)}` failed: {(done.stderr or done.stdout)[-800:]}"
    stamp.write_text(digest)
    return None


def python_of(peer: str) -> str:
    return str(ROOT / PEERS[peer][2] / "bin" / "python")


# -- stores -------------------------------------------------------------------------------
def _redis_url(base: str, db: int) -> str:
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", "", ""))


def _pg_url(base: str, database: str) -> str:
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", "", ""))


class Store:
    """One peer's private store, reset between measurements."""

    def __init__(self, peer: str, servers: Servers) -> None:
        self.peer = peer
        self.backend, self.db, _, _ = PEERS[peer]
        self.servers = servers
        if self.backend == "redis":
            assert self.db is not None
            self.url = _redis_url(servers.redis, self.db)
        else:
            self.database = f"whpeers_{peer}"
            self.url = _pg_url(servers.postgres, self.database)

    def reset(self) -> None:
        if self.backend == "redis":
            import redis

            client = redis.Redis.from_url(self.url)
            try:
                size = client.dbsize()
                if size and not client.exists(MARKER):
                    raise RuntimeError(
                        f"redis db {self.db} holds {size} keys this benchmark did not write; "
                        "not flushing it (empty it yourself or free that db)"
                    )
                client.flushdb()
                client.set(MARKER, "1")
            finally:
                client.close()
        else:
            self._drop()
            self._admin(f'CREATE DATABASE "{self.database}"')
            run_child(self.peer, "setup", self.url)

    def clean(self) -> None:
        if self.backend == "redis":
            import redis

            client = redis.Redis.from_url(self.url)
            try:
                if client.exists(MARKER):
                    client.flushdb()
            finally:
                client.close()
        else:
            self._drop()

    def analyze(self) -> None:
        # A fresh database has no statistics; a real one would have them (autovacuum).
        if self.backend == "postgres":
            import psycopg

            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute("ANALYZE")

    def _drop(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.servers.postgres.split("?")[0], autocommit=True) as conn:
            conn.execute(sql.encode())  # our own fixed database names, not user input


# -- children -----------------------------------------------------------------------------
def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def _args(peer: str, mode: str, url: str, **opts: Any) -> list[str]:
    args = [python_of(peer), "-m", "bench.peers.child", peer, mode, "--url", url]
    for key, value in opts.items():
        args += [f"--{key}", str(value)]
    return args


def _result(stdout: str, stderr: str, returncode: int | None) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith("result "):
            figures: dict[str, Any] = orjson.loads(line[7:])
            if figures.get("error"):
                tail = "\n".join(stderr.strip().splitlines()[-6:])
                figures["error"] = f"{figures['error']}\n{tail}".strip()
            return figures
    tail = "\n".join(stderr.strip().splitlines()[-8:])
    return {"error": f"the child exited with {returncode} and no result:\n{tail}"}


def run_child(peer: str, mode: str, url: str, **opts: Any) -> dict[str, Any]:
    """One child to completion, bounded by CHILD_TIMEOUT_S; its ``result`` line."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            _args(peer, mode, url, **opts),
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return {"error": f"{peer} {mode}: no result within {CHILD_TIMEOUT_S:.0f} s"}
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        err.seek(0)
        return _result(out.decode(errors="replace"), err.read().decode(errors="replace"), None)


def describe(peer: str) -> dict[str, Any]:
    """The peer module's settings and the installed versions, or why it cannot load."""
    code = (
        "import importlib, importlib.metadata as md, json, sys\n"
        f"m = importlib.import_module('bench.peers.{peer}_peer')\n"
        f"dists = [{peer!r}] + {[DISTRIBUTION[peer]] if peer in DISTRIBUTION else []!r}\n"
        "print(json.dumps({'settings': m.SETTINGS, "
        "'version': ', '.join(f'{d} {md.version(d)}' for d in dists), "
        "'concurrency': getattr(m, 'CONCURRENCY', None)}))\n"
    )
    done = subprocess.run(
        [python_of(peer), "-c", code],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "no output"}
    info: dict[str, Any] = orjson.loads(done.stdout)
    return info


def measure_peer(peer: str, name: str, store: Store, sizes: PeerSizes) -> dict[str, Any]:
    """One measurement of one peer on a freshly reset store."""
    store.reset()
    try:
        if name == "enqueue_one":
            return run_child(peer, "enqueue-one", store.url, n=sizes.enqueue_one)
        if name == "enqueue_bulk":
            return run_child(peer, "enqueue-bulk", store.url, n=sizes.enqueue_bulk)
        if name in ("noop", "sleep"):
            n, task, conc = (
                (sizes.noop, "noop", 10) if name == "noop" else (sizes.sleep, "sleep10", 100)
            )
            filled = run_child(peer, "fill", store.url, n=n, task=task)
            if filled.get("error"):
                return {"error": f"enqueueing the jobs failed: {filled['error']}"}
            store.analyze()
            return run_child(
                peer, "work", store.url, n=n, concurrency=conc, deadline=CHILD_TIMEOUT_S - 20
            )
        return _roundtrip(peer, store, sizes)
    finally:
        store.clean()


def _roundtrip(peer: str, store: Store, sizes: PeerSizes) -> dict[str, Any]:
    with tempfile.TemporaryFile() as err:
        server = subprocess.Popen(
            _args(peer, "serve", store.url, concurrency=10),
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
        try:
            figures = run_child(
                peer,
                "roundtrip",
                store.url,
                n=sizes.roundtrip,
                warmup=sizes.warmup,
                deadline=CHILD_TIMEOUT_S - 30,
            )
            if figures.get("error") and server.poll() is not None:
                err.seek(0)
                tail = err.read().decode(errors="replace").strip().splitlines()[-5:]
                figures["error"] += "\nthe worker had exited:\n" + "\n".join(tail)
            return figures
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGKILL)
            server.wait()


# -- workhorse, in the same run -------------------------------------------------------------
def measure_workhorse(kind: str, name: str, servers: Servers, quick: bool) -> dict[str, Any]:
    """The existing bench's measurement (``bench.__main__.one``), so the figures are the
    ones ``python -m bench`` reports, taken minutes from the peers'."""
    from bench.__main__ import one
    from bench.measure import sizes_for as workhorse_sizes

    def quiet(done: int, total: int) -> None:
        return None

    try:
        return asyncio.run(one(kind, name, workhorse_sizes(kind, quick), servers, quiet))
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def timed(fn: Any, *args: Any) -> tuple[dict[str, Any], float]:
    """``fn(*args)``, noting the load average before it (others' work shows there)."""
    load, t0 = os.getloadavg()[0], time.monotonic()
    figures: dict[str, Any] = fn(*args)
    figures["load1_before"] = load
    return figures, time.monotonic() - t0
