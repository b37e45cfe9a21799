"""The app of the hook acceptance test: a task, and a hook that appends each completion to
an independent ledger file (``HOOK_LEDGER``): ``JOB_ID PID HANDLED_AT FINISHED_AT``, one
O_APPEND write per line so lines of successive listener processes never mix."""

from __future__ import annotations

import os
import time

from workhorse import JobEvent, Workhorse

app = Workhorse()


@app.task
async def square(n: int) -> int:
    return n * n


@app.on("job.completed", task="square", name="ledger")
def ledger(event: JobEvent) -> None:
    assert event.result == event.data * event.data
    fd = os.open(os.environ["HOOK_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        line = f"{event.job_id} {os.getpid()} {time.time():.6f} {event.finished_at or 0:.6f}\n"
        os.write(fd, line.encode())
    finally:
        os.close(fd)
