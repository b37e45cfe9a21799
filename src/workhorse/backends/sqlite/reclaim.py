"""Reclaiming expired leases: a stalled job is requeued, or stopped past max_stalls or a cancel."""

from __future__ import annotations

import sqlite3
from typing import Any

from workhorse.backends.sqlite.events import EventRow, event_row
from workhorse.backends.sqlite.rows import to_json
from workhorse.backends.sqlite.tally import Move
from workhorse.backends.sqlite.tally import write as tally


def reclaim(conn: sqlite3.Connection, now: float, first: int) -> tuple[list[str], list[EventRow]]:
    """Requeue (or stop) every active job whose lease ran out at ``now``: its ids, its events,
    to be written numbered from ``first`` (a requeued job's seq is its job.stalled event's)."""
    # A try whose worker died spends the stall budget, not an attempt.
    rows = conn.execute(
        "UPDATE wh_jobs SET attempts = attempts - 1, stalls = stalls + 1 "
        "WHERE state = 'active' AND expires_at <= ? "
        "RETURNING id, task, queue, worker, stalls, max_stalls, cancel_requested",
        (now,),
    ).fetchall()
    events: list[EventRow] = []
    moves: list[Move] = []
    for id_, task, queue, worker, stalls, max_stalls, cancel_requested in rows:
        error: dict[str, Any] = {
            "type": "LeaseExpired",
            "message": f"worker {worker} stopped renewing its lease (stall "
            f"{stalls}, max_stalls {max_stalls})",
            "traceback": "",
        }
        seq = first + len(events)
        events.append(
            event_row("job.stalled", id_, task, queue, now, {"stalls": stalls, "worker": worker})
        )
        if cancel_requested:
            state: str | None = "cancelled"
            events.append(event_row("job.cancelled", id_, task, queue, now))
        elif stalls > max_stalls:
            state = "failed"
            error["message"] = (
                f"killed its worker {stalls} times: the lease expired each time "
                f"(max_stalls {max_stalls})"
            )
            events.append(
                event_row("job.failed", id_, task, queue, now, {"stalls": stalls, "error": error})
            )
        else:
            state = None
        moves.append((queue, "active", state or "queued", 1))
        if state is None:
            conn.execute(
                "UPDATE wh_jobs SET state = 'queued', run_at = ?, seq = ?, token = NULL, "
                "expires_at = NULL, worker = NULL, cancel_requested = 0, error = ? "
                "WHERE id = ?",
                (now, seq, to_json(error), id_),
            )
        else:
            conn.execute(
                "UPDATE wh_jobs SET state = ?, finished_at = ?, token = NULL, "
                "expires_at = NULL, error = ? WHERE id = ?",
                (state, now, to_json(error), id_),
            )
    tally(conn, moves)
    return [r[0] for r in rows], events
