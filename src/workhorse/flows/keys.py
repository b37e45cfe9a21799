"""Key names in the store's key-value space, and step job ids derived from what caused them.

A step's job id is ``r``, its run's id, its run's generation and a hash of the step and
the trigger's occurrence: the same cause always gives the same id, and a worker reads the
run from the id alone (other job ids are hex digits, never ``r``)."""

from __future__ import annotations

import hashlib
import math
import os
import re
import time

PREFIX = "flows:"
RUN_ID_LEN = 16


def new_run_id() -> str:
    """Random but for its first six digits, the time in milliseconds (modulo 2**24, about
    4.7 hours): runs started close together get ids close together, so the index entries
    that concurrent runs write (their jobs, keys and events by run) share B-tree pages
    instead of each dirtying its own. Two runs collide only with the same prefix and the
    same 40 random bits: over runs spread beyond a wrap as likely as with 64 random bits,
    and less for runs closer together (only those of one millisecond share a prefix)."""
    return f"{time.time_ns() // 1_000_000 & 0xFFFFFF:06x}{os.urandom(5).hex()}"


_RUN_ID = re.compile(f"[0-9a-f]{{{RUN_ID_LEN}}}")
# A step job's id starts with ``r`` and its run's id (read on every job a worker runs).
_STEP_RUN = re.compile(f"r[0-9a-f]{{{RUN_ID_LEN}}}")


def is_run_id(value: str) -> bool:
    return _RUN_ID.fullmatch(value) is not None


MAX_GEN = 0xFFFF  # restarts of one run


def step_job_id(run: str, gen: int, step: str, *cause: str) -> str:
    digest = hashlib.sha256("\x1f".join((str(gen), step, *cause)).encode()).hexdigest()
    return f"r{run}{gen:04x}{digest[:11]}"


def run_of(job_id: str) -> tuple[str, int] | None:
    """The run and generation a step job belongs to, by its id (None: no step's id)."""
    if len(job_id) != 32 or _STEP_RUN.match(job_id) is None:
        return None
    try:
        return job_id[1 : 1 + RUN_ID_LEN], int(job_id[1 + RUN_ID_LEN : 5 + RUN_ID_LEN], 16)
    except ValueError:
        return None


def run_key(run: str) -> str:
    return f"{PREFIX}run:{run}"


def runs_prefix() -> str:
    return f"{PREFIX}run:"


def job_prefix(run: str) -> str:
    """The run's index of step jobs: one key per job, written before it is enqueued."""
    return f"{PREFIX}job:{run}:"


def job_key(run: str, job_id: str) -> str:
    return f"{PREFIX}job:{run}:{job_id}"  # job_prefix's, inline: written once per step


def input_prefix(run: str, gen: int, step: str) -> str:
    """A join's inputs that arrived, one key per trigger."""
    return f"{PREFIX}in:{run}:{gen}:{step}:"


def index_prefix(flow: str | None) -> str:
    """The index of runs by creation time, one key per run: of every flow, or of one (its
    name's length first: no flow's prefix holds another's keys)."""
    return f"{PREFIX}index:all:" if flow is None else f"{PREFIX}index:flow:{len(flow)}:{flow}:"


def index_key(flow: str | None, created: float, run: str) -> str:
    """A run's key in an index: its creation time in microseconds, fixed width, then its
    id, so that the keys' byte order is the runs' order (``Backend.kv_scan``)."""
    return f"{index_prefix(flow)}{round(created * 1_000_000):017d}:{run}"


# Set once the runs stored before the index have their keys (``listing.backfill``).
INDEXED = f"{PREFIX}indexed"


def end_prefix() -> str:
    return f"{PREFIX}end:"


def end_key(run: str, gen: int) -> str:
    """Set once, by whoever ends the run's generation: the first end wins. It holds the
    end (state, time, error), which readers lay over the run's record."""
    return f"{PREFIX}end:{run}:{gen}"  # end_prefix's, inline: read once per step


def state_prefix(run: str | None) -> str:
    return f"{PREFIX}state:global:" if run is None else f"{PREFIX}state:run:{run}:"


def waiting_prefix(run: str) -> str:
    """The run's waits not yet resolved: one key per wait, so the run is not over."""
    return f"{PREFIX}waiting:{run}:"


def wait_prefix(signal: str, key: str) -> str:
    """Waits for one signal and key, across runs: what a signal resolves."""
    return f"{PREFIX}wait:{signal}:{len(key)}:{key}:"


def signal_key(signal: str, key: str) -> str:
    return f"{PREFIX}signal:{signal}:{len(key)}:{key}"


def resolved_key(job_id: str) -> str:
    """Who resolved the wait of the step job ``job_id``: ``signal`` or ``timeout``."""
    return f"{PREFIX}resolved:{job_id}"


def stall_key(run: str, last: float) -> str:
    """Marks one stall of the run (by its last progress), so it is reported once."""
    return f"{PREFIX}stall:{run}:{last:.6f}"


def count_key(run: str, gen: int) -> str:
    """A counter (apart from the kv keys): the live steps of the run's generation, in a
    flow that is neither closed nor waiting (``FlowDef.counted``)."""
    return f"{PREFIX}count:{run}:{gen}"


def restart_key(run: str, gen: int) -> str:
    """Held by the one restart of the run's generation ``gen`` while it writes the next
    (a second restart of ``gen``, from two operators or a resend, waits for that one
    instead), and by a resume or a retention removal of ``gen`` (``records.hold``)."""
    return f"{PREFIX}restart:{run}:{gen}"


def live_prefix() -> str:
    """Runs not yet ended, one key each: what the workers' sweep reads."""
    return f"{PREFIX}live:"


def live_key(run: str) -> str:
    """Holds the run's flow name, with STATEFUL added once a step kept state in the run."""
    return f"{PREFIX}live:{run}"  # live_prefix's, inline


STATEFUL = " state"  # not in a flow's name


def child_prefix(run: str) -> str:
    """The runs that the run's steps started (``ctx.flow.start``), one key each."""
    return f"{PREFIX}child:{run}:"


def expiry_prefix() -> str:
    """Ended runs by the time they are due for removal: what retention reads, in order."""
    return f"{PREFIX}expire:"


def expiry_key(due: float, run: str, gen: int) -> str:
    """The run generation's entry among the ended runs, named by its removal time in
    whole milliseconds, zero-padded so that names sort as times."""
    return f"{PREFIX}expire:{math.floor(due * 1000):015d}:{run}:{gen}"


def expiry_of(key: str) -> tuple[float, str, int] | None:
    """The removal time, run and generation an entry names (None: not one)."""
    parts = key[len(expiry_prefix()) :].split(":")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[2].isdigit():
        return None
    return int(parts[0]) / 1000, parts[1], int(parts[2])
