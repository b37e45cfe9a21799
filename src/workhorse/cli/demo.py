"""``workhorse demo``: a tour of workhorse on a real topology, in sections.

The producer (this process) and one worker (a ``workhorse worker`` subprocess) share a
store: by default its own SQLite file, ``.workhorse/demo.db``, so the user's default
database is never touched. A backend that cannot be shared between processes (memory://)
gets an in-process worker instead. Each section is one method listed in ``SECTIONS``;
later features add theirs there.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from workhorse import demo_tasks
from workhorse.cli.console import counts_table, fmt_progress, follow, jobs_table, workers_table
from workhorse.cli.flows import run_tree
from workhorse.demo_tasks import (
    app,
    crunch,
    explode,
    flaky,
    reset_results,
    square,
    stored_squares,
)
from workhorse.errors import JobFailed, WorkhorseError
from workhorse.job import Job, JobState
from workhorse.worker import Worker

DEMO_DIR = Path(".workhorse")
DEMO_DB = DEMO_DIR / "demo.db"
WORKER_LOG = DEMO_DIR / "demo-worker.log"
QUEUES = "default:10,batch:50"
DEMO_APP = "workhorse.demo_tasks:app"
# Snappier than the defaults so the tour does not sit in idle waits.
POLL_INTERVAL = 0.2
HEARTBEAT_INTERVAL = 1.0

__all__ = ["run_demo"]


def command_name() -> str:
    """How to call workhorse so that a printed command works as printed: ``workhorse``
    when the shell finds this very installation, else the script's path (a fresh clone's
    ``.venv/bin/workhorse``), else ``python -m workhorse``."""
    script = Path(sys.executable).parent / "workhorse"
    found = shutil.which("workhorse")
    if found is not None and script.exists() and Path(found).resolve() == script.resolve():
        return "workhorse"
    if script.exists():
        path = os.path.relpath(script)
        if path.startswith(".."):
            path = str(script)
        return shlex.quote(path if "/" in path else f"./{path}")
    return f"{shlex.quote(sys.executable)} -m workhorse"


class DemoFailed(Exception):
    """A section did not see what it expected: the demo exits 1."""


class Demo:
    def __init__(self, url: str, batch: int, console: Console) -> None:
        self.url = url
        self.batch = batch
        self.console = console
        self.proc: subprocess.Popen[bytes] | None = None
        self.inproc: Worker | None = None
        self.inproc_task: asyncio.Task[None] | None = None
        self.showcase: list[str] = []  # job ids for the summary table
        self.flow_run: str | None = None  # the flow section's run
        self.started = time.monotonic()

    SECTIONS: tuple[tuple[str, str], ...] = (
        ("Worker", "start_worker"),
        ("Retries", "retries"),
        ("Progress", "progress"),
        ("Failure", "failure"),
        ("Batch", "batch_jobs"),
        ("Hooks", "hooks"),
        ("HTTP", "http"),
        ("Flow", "flow"),
        ("Summary", "summary"),
        ("Shutdown", "shutdown"),
    )

    def say(self, text: str) -> None:
        self.console.print(text)

    async def main(self) -> int:
        self.say(f"[bold]workhorse demo[/] on [cyan]{self.url}[/]")
        try:
            for i, (title, method) in enumerate(self.SECTIONS, 1):
                self.console.rule(f"[bold]{i}. {title}")
                section: Callable[[], Awaitable[None]] = getattr(self, method)
                await section()
        except (DemoFailed, WorkhorseError) as exc:
            self.console.print(f"[red bold]demo failed:[/] {exc}")
            await self.stop_worker()
            self.tail_worker_log()
            return 1
        finally:
            await app.close()
        took = time.monotonic() - self.started
        self.console.rule()
        self.say(f"[green bold]demo finished in {took:.1f}s[/]. Look around:")
        me, url = command_name(), shlex.quote(self.url)
        for cmd in (
            f"{me} status --url {url}",
            f"{me} jobs --url {url}",
            f"{me} job {self.showcase[0]} --url {url}" if self.showcase else "",
            f"{me} flow {DEMO_APP} {self.flow_run} --url {url}" if self.flow_run else "",
        ):
            if cmd:
                # Never wrapped or marked up: the line must work when pasted.
                self.console.print(f"  {cmd}", soft_wrap=True, markup=False, highlight=False)
        return 0

    # -- 1. worker ---------------------------------------------------------------------
    async def start_worker(self) -> None:
        backend = app.backend
        if not backend.capabilities.multi_process:
            self.say(
                f"{self.url} cannot be shared between processes: the worker runs in "
                "this process instead of a subprocess."
            )
            self.inproc = app.worker(queues=QUEUES)
            self.inproc_task = asyncio.create_task(self.inproc.run())
        else:
            cmd = [
                sys.executable,
                "-m",
                "workhorse",
                "worker",
                DEMO_APP,
                "--url",
                self.url,
                "--queues",
                QUEUES,
            ]
            env = {
                **os.environ,
                "WORKHORSE_POLL_INTERVAL": str(POLL_INTERVAL),
                "WORKHORSE_HEARTBEAT_INTERVAL": str(HEARTBEAT_INTERVAL),
                "COLUMNS": "120",
            }
            WORKER_LOG.parent.mkdir(parents=True, exist_ok=True)
            with WORKER_LOG.open("wb") as log:
                # Popen returns at once; the exit is polled without blocking the loop.
                self.proc = subprocess.Popen(  # noqa: ASYNC220
                    cmd, stdout=log, stderr=subprocess.STDOUT, env=env
                )
            self.say(
                f"started [bold]workhorse worker workhorse.demo_tasks:app --queues {QUEUES}[/] "
                f"as pid {self.proc.pid} (its log: {WORKER_LOG})"
            )
        deadline = time.monotonic() + 20
        while not (workers := await app.workers()):
            if self.proc is not None and self.proc.poll() is not None:
                raise DemoFailed(f"the worker exited with code {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise DemoFailed("the worker did not check in within 20s")
            await asyncio.sleep(0.05)
        w = workers[0]
        self.say(
            f"worker [bold]{w.id}[/] is live: it claims from queues "
            f"{', '.join(f'{q} ({n} at once)' for q, n in w.queues.items())}, renews "
            f"its leases and beats every {app.settings.heartbeat_interval:g}s"
        )

    # -- 2. retries --------------------------------------------------------------------
    async def retries(self) -> None:
        self.say(
            "[bold]flaky[/] raises ConnectionError on its first two attempts; it has "
            "retries=3 and a fixed 0.2s backoff."
        )
        handle = await flaky.enqueue({"service": "payments-api"})
        self.showcase.append(handle.id)
        result = await handle.result(timeout=15)
        job = await self.get(handle.id)
        for line in job.logs:
            style = "yellow" if line.get("level") == "warning" else "green"
            self.say(f"  [{style}]{line['message']}[/]")
        self.say(f"completed after {job.attempts} attempts → {result}")
        if job.attempts != 3:
            raise DemoFailed(f"flaky took {job.attempts} attempts, expected 3")

    # -- 3. progress -------------------------------------------------------------------
    async def progress(self) -> None:
        self.say(
            "[bold]crunch[/] works for ~2s and reports progress; the producer polls "
            "the job and draws it."
        )
        handle = await crunch.enqueue({"steps": 20, "pause": 0.1})
        self.showcase.append(handle.id)
        job = await follow(app, handle.id, "crunch", self.console, timeout=30, transient=False)
        if job is None or job.state is not JobState.COMPLETED:
            raise DemoFailed(f"crunch did not complete: {job}")
        self.say(f"result {job.result}, last progress {fmt_progress(job.progress)}%")

    # -- 4. failure --------------------------------------------------------------------
    async def failure(self) -> None:
        self.say(
            "[bold]explode[/] is a sync function (it runs in a thread) that raises; "
            "app.run() brings the remote error back to the caller."
        )
        handle = await explode.enqueue({"invoice": "INV-0042"})
        self.showcase.append(handle.id)
        try:
            await handle.result(timeout=15)
        except JobFailed as exc:
            self.say(f"[red]JobFailed[/]: remote [bold]{exc.type}[/]: {exc.message}")
            tail = [ln for ln in exc.traceback.strip().splitlines() if ln.strip()][-3:]
            for ln in tail:
                self.say(f"  [dim]{ln}[/]")
        else:
            raise DemoFailed("explode was expected to fail")
        # What the dashboard's "Edit the payload and retry" does: the same job, fixed.
        fixed = {"invoice": "INV-0042", "total": "42.00"}
        if not await app.retry(handle.id, fixed, by="demo"):
            raise DemoFailed(f"the failed job {handle.id} could not be retried")
        result = await handle.result(timeout=15)
        self.say(f"retried with a total: app.retry(job_id, {fixed})")
        self.say(f"  → the same job completed: {result}")

    # -- 5. batch ----------------------------------------------------------------------
    async def batch_jobs(self) -> None:
        n = self.batch
        self.say(
            f"[bold]square[/] x {n:,} on the batch queue, enqueued with "
            "enqueue_many (one round trip)."
        )
        t0 = time.perf_counter()
        handles = await square.enqueue_many(range(n))
        t1 = time.perf_counter()
        self.say(
            f"enqueued {len(handles):,} jobs in {t1 - t0:.3f}s "
            f"([bold]{n / (t1 - t0):,.0f} jobs/s[/])"
        )
        columns = (
            TextColumn("[bold]running"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        done = 0
        with Progress(*columns, console=self.console) as bar:
            tid = bar.add_task("batch", total=n)
            deadline = time.monotonic() + 60
            while done < n:
                counts = (await app.counts(["batch"]))["batch"]
                done = counts.get(JobState.COMPLETED, 0)
                bar.update(tid, completed=done)
                failed = counts.get(JobState.FAILED, 0)
                if failed:
                    raise DemoFailed(f"{failed} batch job(s) failed")
                if time.monotonic() > deadline:
                    raise DemoFailed(f"only {done} of {n} batch jobs ran within 60s")
                if done < n:
                    await asyncio.sleep(0.1)
        t2 = time.perf_counter()
        self.say(
            f"ran {n:,} jobs in {t2 - t1:.2f}s ([bold]{n / (t2 - t1):,.0f} jobs/s[/], "
            "one worker, enqueue to result)"
        )
        last = await self.get(handles[-1].id)
        if last.result != (n - 1) ** 2:
            raise DemoFailed(f"square({n - 1}) returned {last.result}")
        self.say(f"square({n - 1:,}) = {last.result:,}")

    # -- 6. hooks ----------------------------------------------------------------------
    async def hooks(self) -> None:
        n = self.batch
        self.say(
            "The worker only computed the squares. A hook, [bold]@app.on('job.completed', "
            "task='square')[/], stores each result in this app's own SQLite table "
            f"({demo_tasks.RESULTS_DB}); a listener in this process reads the durable "
            "event log from its saved cursor (in production: app.start_listener() in your API, or "
            "`workhorse listen`)."
        )
        t0 = time.perf_counter()
        await app.start_listener(group="demo", from_start=True)
        stored = 0
        deadline = time.monotonic() + 60
        while stored < n:
            stored = await asyncio.to_thread(stored_squares)
            if time.monotonic() > deadline:
                raise DemoFailed(f"the hook stored {stored} of {n} squares within 60s")
            if stored < n:
                await asyncio.sleep(0.1)
        took = time.perf_counter() - t0
        await app.stop_listener()
        lag = (await app.hooks.lag("demo")).behind
        self.say(
            f"the hook stored {stored:,} squares in {took:.2f}s "
            f"([bold]{stored / took:,.0f} completions/s[/]); group demo is {lag} events behind"
        )

    # -- 7. http -----------------------------------------------------------------------
    async def http(self) -> None:
        try:
            from workhorse.cli.demo_http import serve_and_call
        except ImportError as exc:
            self.say(f"[yellow]skipped: the http extra is not installed ({exc})[/]")
            return
        try:
            lines = await serve_and_call(app, self.showcase)
        except RuntimeError as exc:
            raise DemoFailed(str(exc)) from None
        for line in lines:
            self.say(line)

    # -- 8. flow -----------------------------------------------------------------------
    async def flow(self) -> None:
        self.say(
            "A flow: [bold]receive[/] starts the run, [bold]charge[/] and [bold]reserve[/] "
            "run in parallel when it finishes, and [bold]ship[/] joins them (its input keyed "
            "by trigger). Steps are tasks with flow=, entry=True or subscribes=[...]."
        )
        t0 = time.perf_counter()
        run = await app.flows.start("order", {"id": "A-17", "total": 42})
        try:
            result = await run.result(timeout=30)
        except (TimeoutError, WorkhorseError) as exc:
            raise DemoFailed(f"flow run {run.id} did not complete: {exc!r}") from None
        took = time.perf_counter() - t0
        info = await app.flows.get(run.id)
        self.console.print(run_tree(info, app.flows["order"]))
        self.say(f"run {run.id} completed in {took:.2f}s: {result['ship']}")
        self.flow_run = run.id

    # -- 9. summary --------------------------------------------------------------------
    async def summary(self) -> None:
        # Give the worker a beat to report what it has processed since the last one.
        expected = len(self.showcase) + self.batch
        deadline = time.monotonic() + 2 * HEARTBEAT_INTERVAL + 0.5
        while time.monotonic() < deadline:
            workers = await app.workers()
            if workers and workers[0].processed >= expected:
                break
            await asyncio.sleep(0.1)
        jobs = [await self.get(job_id) for job_id in self.showcase]
        cols = ("id", "task", "state", "attempts", "took", "result / error")
        self.console.print(jobs_table(jobs, title="The showcase jobs", columns=cols))
        counts = await app.counts()
        paused = {q for q in counts if await app.is_paused(q)}
        self.console.print(counts_table(counts, paused))
        self.console.print(workers_table(await app.workers()))

    # -- 10. shutdown ------------------------------------------------------------------
    async def shutdown(self) -> None:
        code = await self.stop_worker()
        if self.proc is not None:
            self.say(
                f"sent SIGTERM: the worker stopped claiming, finished what it ran and "
                f"exited with code {code}"
            )
            if code != 0:
                raise DemoFailed(f"the worker exited with code {code}")
        else:
            self.say("stopped the in-process worker")
        if await app.workers():
            raise DemoFailed("the worker is still listed as live after stopping")
        self.say("it removed itself from the live workers")

    # -- helpers -----------------------------------------------------------------------
    async def get(self, job_id: str) -> Job:
        job = await app.get_job(job_id)
        if job is None:
            raise DemoFailed(f"job {job_id} is missing")
        return job

    async def stop_worker(self) -> int | None:
        if self.inproc is not None and self.inproc_task is not None:
            self.inproc.stop()
            await self.inproc_task
            self.inproc = None
            return 0
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return None if proc is None else proc.returncode
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            raise DemoFailed("the worker did not stop within 15s of SIGTERM; killed it")
        return proc.returncode

    def tail_worker_log(self, lines: int = 15) -> None:
        if self.proc is None or not WORKER_LOG.exists():
            return
        text = WORKER_LOG.read_text(errors="replace").splitlines()[-lines:]
        self.console.print(f"[dim]last lines of {WORKER_LOG}:[/]")
        for line in text:
            self.console.print(f"  [dim]{line}[/]", markup=False, highlight=False)


def run_demo(url: str | None = None, batch: int = 5000, console: Console | None = None) -> int:
    """Run the tour; returns the exit code (0 when every section saw what it expected)."""
    if url is None:
        DEMO_DIR.mkdir(exist_ok=True)
        for suffix in ("", "-wal", "-shm", "-journal"):  # a fresh tour every time
            Path(f"{DEMO_DB}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{DEMO_DB}"
    # The app's own database: beside the demo's store, or (a store the user named)
    # in a temporary folder, so the user's folder gets nothing it did not ask for.
    reset_results(
        DEMO_DIR / "demo-results.db"
        if url == f"sqlite:///{DEMO_DB}"
        else Path(tempfile.mkdtemp(prefix="workhorse-demo-")) / "results.db"
    )
    app.configure(
        url=url,
        poll_interval=POLL_INTERVAL,
        heartbeat_interval=HEARTBEAT_INTERVAL,
        api_tokens=f"write:{secrets.token_hex(16)}",  # the HTTP section's own, never shown
    )
    if console is None:
        console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    demo = Demo(url, batch, console)
    return asyncio.run(demo.main())
