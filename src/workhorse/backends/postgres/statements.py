"""The SQL of the PostgreSQL backend, built once per schema.

Every state change is ONE statement (data-modifying CTEs), run in autocommit: one round
trip, one transaction, and its lifecycle events and NOTIFYs commit with it. The schema
name is validated before it gets here (``[a-z_][a-z0-9_]*``), so it is safe to inline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from workhorse.backends.postgres.positions import SCALE

_EPOCH = "extract(epoch from {})::float8"


def _epoch(col: str) -> str:
    return _EPOCH.format(col)


JOB_COLUMNS = ", ".join(
    [
        "id", "task", "queue", "state", "data", "priority", "attempts", "max_attempts",
        _epoch("created_at"), _epoch("run_at"), _epoch("started_at"), _epoch("finished_at"),
        "progress", "result", "error", "logs", "timeout", "worker", _epoch("expires_at"),
        "dedup_key", "run_at > now()", "keep_for", "stalls", "max_stalls", "logs_dropped",
    ]
)  # fmt: skip

# A finished job's record as one text for the record channel, in JOB_COLUMNS' order with
# data and result in base64 (read in the UPDATE's RETURNING: the row as it is committed).
_RECORD = "json_build_array(" + ", ".join(
    [
        "j.id", "j.task", "j.queue", "j.state", "encode(j.data, 'base64')", "j.priority",
        "j.attempts", "j.max_attempts", _epoch("j.created_at"), _epoch("j.run_at"),
        _epoch("j.started_at"), _epoch("j.finished_at"), "j.progress",
        "encode(j.result, 'base64')", "j.error", "j.logs", "j.timeout", "j.worker",
        _epoch("j.expires_at"), "j.dedup_key", "j.run_at > now()", "j.keep_for", "j.stalls",
        "j.max_stalls", "j.logs_dropped",
    ]
) + ")::text"  # fmt: skip
RECORD_MAX = 7900  # bytes of a NOTIFY payload (the server's limit is 8,000)

_LIVE = "state IN ('queued', 'active')"
_STATES = "ARRAY['queued', 'active', 'completed', 'failed', 'cancelled']"
_PROBE = 5000  # index entries counts() reads on each side of now() before counting all


def tally(s: str, rows: str, was: str, now: str) -> str:
    """A CTE appending the count deltas of the rows of ``rows`` (which has a ``queue``):
    one less of state ``was``, one more of ``now`` (SQL, NULL for none), per queue."""
    return f"""tally AS (
  INSERT INTO {s}.job_counts (queue, state, n)
  SELECT r.queue, c.state, sum(c.n) FROM {rows} r,
    LATERAL (VALUES (({was})::text, -1), (({now})::text, 1)) AS c(state, n)
  WHERE c.state IS NOT NULL GROUP BY 1, 2 HAVING sum(c.n) <> 0
)"""


def _kept(lines: str, max_lines: str, max_bytes: str) -> str:
    """SQL for the newest of the JSON array ``lines`` within the caps (in one statement, so
    the cap holds under concurrent writers)."""
    return f"""(CASE WHEN jsonb_array_length({lines}) <= {max_lines}
                  AND octet_length({lines}::text) <= {max_bytes} THEN {lines}
    ELSE (SELECT coalesce(jsonb_agg(e ORDER BY n), '[]'::jsonb) FROM (
      SELECT e, n, count(*) OVER w AS r, sum(octet_length(e::text)) OVER w AS b
      FROM jsonb_array_elements({lines}) WITH ORDINALITY AS t(e, n)
      WINDOW w AS (ORDER BY n DESC)) k WHERE r <= {max_lines} AND b <= {max_bytes}) END)"""


def _set_logs(old: str, new: str, dropped: str, max_lines: str, max_bytes: str) -> str:
    """SET clauses appending the lines ``new`` (or NULL) to ``old``, capped, and counting
    the lines dropped: ``dropped`` the worker never sent, and those cut here."""
    lines = f"({old} || {new})"
    kept = _kept(lines, max_lines, max_bytes)
    return f"""logs = CASE WHEN {new} IS NULL THEN {old} ELSE {kept} END,
    logs_dropped = logs_dropped + coalesce({dropped}, 0) + CASE WHEN {new} IS NULL THEN 0
      ELSE jsonb_array_length({lines}) - jsonb_array_length({kept}) END"""


# New jobs' rows from one array per column (enqueue_row's order), with each row's ordinal:
# the enqueue and enqueue_claimed statements both read their jobs from it.
_JOB_ARRAYS = """SELECT t.id, t.task, t.queue, t.data, t.priority, t.max_attempts, t.timeout,
         t.lease, t.dedup_key, coalesce(to_timestamp(t.at), now() + make_interval(secs => t.delay)),
         t.keep_for, t.holds, t.max_stalls
  FROM unnest(%s::text[], %s::text[], %s::text[], %s::bytea[], %s::int4[], %s::int4[],
              %s::float8[], %s::float8[], %s::text[], %s::float8[], %s::float8[],
              %s::float8[], %s::int4[], %s::int4[])
       WITH ORDINALITY AS t(id, task, queue, data, priority, max_attempts, timeout, lease,
                            dedup_key, at, delay, keep_for, holds, max_stalls, ord)"""


@dataclass(frozen=True, slots=True)
class Statements:
    schema: str

    @property
    def s(self) -> str:
        return f'"{self.schema}"'

    @property
    def jobs_channel(self) -> str:
        return f"'{self.schema}.jobs'"

    @property
    def done_channel(self) -> str:
        return f"'{self.schema}.done'"

    @property
    def record_channel(self) -> str:
        return f"'{self.schema}.record'"

    # -- producing ---------------------------------------------------------------------
    def enqueue(self, keyed: bool = True, one: bool = False) -> str:
        """Without ``keyed`` (no job of the batch has a dedup key) there is no ON CONFLICT
        clause: a speculative insertion takes and releases a lock per row for nothing.
        With ``one``, the job's fields are plain parameters (rows.enqueue_row), not arrays."""
        s = self.s
        arbiter = (
            f"ON CONFLICT (queue, dedup_key) WHERE dedup_key IS NOT NULL AND {_LIVE} DO NOTHING"
            if keyed
            else ""
        )
        source = (
            """VALUES (%s::text, %s::text, %s::text, %s::bytea, %s::int4, %s::int4, %s::float8,
          %s::float8, %s::text,
          coalesce(to_timestamp(%s::float8), now() + make_interval(secs => %s::float8)),
          %s::float8, %s::int4, %s::int4)"""
            if one
            else f"""{_JOB_ARRAYS}
  ORDER BY t.ord"""
        )
        note = (
            f"SELECT pg_notify({self.jobs_channel}, queue) FROM ins"
            if one
            else f"SELECT pg_notify({self.jobs_channel}, q.queue) "
            "FROM (SELECT DISTINCT queue FROM ins) q"
        )
        # One job is one count: no grouping of the rows (tally's general form).
        counted = (
            f"tally AS (INSERT INTO {s}.job_counts (queue, state, n) "
            "SELECT queue, 'queued', 1 FROM ins)"
            if one
            else tally(s, "ins", "NULL", "'queued'")
        )
        return f"""
WITH ins AS (
  INSERT INTO {s}.jobs
    (id, task, queue, data, priority, max_attempts, timeout, lease, dedup_key, run_at,
     keep_for, holds, max_stalls)
  {source}
  {arbiter}
  RETURNING id, task, queue, run_at > now() AS scheduled
), ev AS (
  INSERT INTO {s}.events (type, job_id, task, queue)
  SELECT 'job.queued', id, task, queue FROM ins
), {counted}, note AS (
  {note}
)
SELECT id, scheduled FROM ins, (SELECT count(*) FROM note) n"""

    def _claim_jobs(self, owned: str = "", after: str = "") -> str:
        """The CTEs c, claimed and ins of enqueue_claimed: the items whose ``unless`` key
        is not live set their claim key if absent and write their job unless its id or
        its live dedup key is taken (ON CONFLICT with no target: any unique index); claims
        go in key order, so two such statements never wait on each other in a cycle.
        ``owned``: the items have a fourth column, ``owner``, and only those whose owner
        is in that relation are written (a finish's follow-ups: the jobs it finished).
        ``after``: a CTE written first (read by ``c``, so its rows take lower ids)."""
        s = self.s
        columns, where = ("key, value, unless, ord", "")
        if owned:
            columns = "key, value, unless, owner, ord"
            where = f"c.owner IN (SELECT id FROM {owned}) AND "
        if after:
            where += f"(SELECT count(*) FROM {after}) >= 0 AND "
        arrays = ", ".join(["%s::text[]"] * (4 if owned else 3))
        return f"""c AS MATERIALIZED (
  SELECT c.key, c.value, c.ord
  FROM unnest({arrays}) WITH ORDINALITY AS c({columns})
  -- A scalar subquery, one key lookup per item: as NOT EXISTS, the planner hashed the
  -- whole kv table (every run's index entries) for each statement.
  WHERE {where}(c.unless IS NULL OR (
    SELECT u.key FROM {s}.kv AS u
    WHERE u.key = c.unless AND (u.expires_at IS NULL OR u.expires_at > now())) IS NULL)
), claimed AS (
  INSERT INTO {s}.kv AS kv (key, value, expires_at)
  SELECT c.key, c.value, NULL FROM c ORDER BY c.key
  ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at
  WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= now()
  RETURNING kv.key
), ins AS (
  INSERT INTO {s}.jobs
    (id, task, queue, data, priority, max_attempts, timeout, lease, dedup_key, run_at,
     keep_for, holds, max_stalls)
  {_JOB_ARRAYS}
  JOIN c ON c.ord = t.ord
  ORDER BY t.id
  ON CONFLICT DO NOTHING
  RETURNING id, task, queue, run_at > now() AS scheduled
)"""

    def enqueue_claimed(self, written: bool = False) -> str:
        """enqueue_claimed in one statement (``_claim_jobs``). Returns the keys claimed
        ('k', key, NULL) and the jobs written ('j', id, scheduled). ``written``
        (enqueue_claimed_with): first kv keys are set (keys and values: two text arrays),
        events published (publish's arrays) and counters added (counter_add_many's
        arrays, distinct keys), before the claims."""
        s = self.s
        first = ""
        if written:
            first = f"""kvs AS (
  INSERT INTO {s}.kv AS kv (key, value, expires_at)
  SELECT k.key, k.value, NULL FROM unnest(%s::text[], %s::text[]) AS k(key, value)
  ORDER BY k.key
  ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = NULL
), pub AS ({self.publish()}
  RETURNING id
), cnt AS ({self.counter_add_many("%s", "%s", "%s")}
), """
        return f"""
WITH {first}{self._claim_jobs(after="pub" if written else "")}, ev AS (
  INSERT INTO {s}.events (type, job_id, task, queue)
  SELECT 'job.queued', id, task, queue FROM ins
), {tally(s, "ins", "NULL", "'queued'")}, note AS (
  SELECT pg_notify({self.jobs_channel}, q.queue) FROM (SELECT DISTINCT queue FROM ins) q
)
SELECT 'k', key, NULL::bool FROM claimed
UNION ALL
SELECT 'j', id, scheduled FROM ins, (SELECT count(*) FROM note) n"""

    def live_by_key(self) -> str:
        return f"""
SELECT queue, dedup_key, id, state, run_at > now() FROM {self.s}.jobs
WHERE (queue, dedup_key) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
  AND dedup_key IS NOT NULL AND {_LIVE}"""

    def hold_by_key(self) -> str:
        """live_by_key for duplicates whose callers wait (run()): each adds a hold to the
        live job, in the same step that finds it live."""
        return f"""
UPDATE {self.s}.jobs j SET holds = j.holds + h.n
FROM unnest(%s::text[], %s::text[], %s::int4[]) AS h(q, k, n)
WHERE j.queue = h.q AND j.dedup_key = h.k AND j.dedup_key IS NOT NULL AND j.{_LIVE}
RETURNING j.queue, j.dedup_key, j.id, j.state, j.run_at > now()"""

    def replace(self) -> str:
        s = self.s
        return f"""
WITH upd AS (
  UPDATE {s}.jobs SET data = %s, priority = %s, max_attempts = %s, max_stalls = %s,
    timeout = %s, holds = holds + %s,
    run_at = coalesce(to_timestamp(%s::float8), now() + make_interval(secs => %s::float8)),
    seq = nextval('{s}.jobs_seq_seq'), token = NULL, expires_at = NULL, worker = NULL,
    cancel_requested = false
  WHERE queue = %s AND dedup_key = %s AND dedup_key IS NOT NULL AND {_LIVE}
    AND state = 'queued'
  RETURNING id, task, queue, run_at > now() AS scheduled
), ev AS (
  INSERT INTO {s}.events (type, job_id, task, queue, data)
  SELECT 'job.queued', id, task, queue, '{{"replaced": true}}' FROM upd
), note AS (
  SELECT pg_notify({self.jobs_channel}, queue) FROM upd
)
SELECT id, scheduled FROM upd, (SELECT count(*) FROM note) n"""

    # -- consuming ---------------------------------------------------------------------
    def claim(self) -> str:
        s = self.s
        return f"""
WITH picked AS (
  SELECT id FROM {s}.jobs
  WHERE state = 'queued' AND queue = %(q)s AND run_at <= now()
    AND NOT EXISTS (SELECT 1 FROM {s}.queues WHERE name = %(q)s AND paused)
  ORDER BY priority DESC, run_at, seq
  LIMIT %(n)s
  FOR UPDATE SKIP LOCKED
), claimed AS (
  UPDATE {s}.jobs j SET state = 'active', attempts = j.attempts + 1, worker = %(w)s,
    token = md5(random()::text), started_at = now(),
    expires_at = now() + make_interval(secs => coalesce(j.lease, %(lease)s))
  FROM picked WHERE j.id = picked.id
  RETURNING j.id, j.token, j.task, j.queue, j.data, j.attempts, j.max_attempts, j.timeout,
    coalesce(j.lease, %(lease)s) AS span, {_epoch("j.created_at")} AS created,
    j.priority, j.run_at, j.seq, j.stalls
), ev AS (
  INSERT INTO {s}.events (type, job_id, task, queue, data)
  SELECT 'job.started', id, task, queue,
         jsonb_build_object('attempt', attempts, 'worker', %(w)s::text)
  FROM claimed
), {tally(s, "claimed", "'queued'", "'active'")}, lazy AS (
  -- Committed without waiting for the WAL flush (this transaction only): docs/decisions.md
  -- "A claim's commit does not wait for its flush" says why no guarantee changes.
  SELECT set_config('synchronous_commit', 'off', true)
), m AS (
  -- A claim that found fewer jobs than it asked for also says when the queue's next job is
  -- due (seconds from now; NULL: none, or paused), so the worker's next claim and its wait
  -- need not ask.
  SELECT CASE WHEN (SELECT count(*) FROM claimed) < %(n)s
    AND NOT EXISTS (SELECT 1 FROM {s}.queues WHERE name = %(q)s AND paused)
    THEN (SELECT extract(epoch from min(run_at) - now())::float8 FROM {s}.jobs
          WHERE state = 'queued' AND queue = %(q)s AND run_at > now()) END AS due
  FROM lazy
)
-- One row when nothing was claimed (id NULL); every row carries the due time.
SELECT c.id, c.token, c.task, c.queue, c.data, c.attempts, c.max_attempts, c.timeout, c.span,
  c.created, c.stalls, m.due
FROM m LEFT JOIN claimed c ON true ORDER BY c.priority DESC, c.run_at, c.seq"""

    def renew(self) -> str:
        return f"""
WITH i AS (SELECT * FROM unnest(%s::text[], %s::text[], %s::float8[]) AS i(id, token, span))
UPDATE {self.s}.jobs j SET expires_at = now() + make_interval(secs => i.span)
-- By primary key, the state tested on the rows only, as the finish does (its comment).
FROM i WHERE j.id = ANY(ARRAY(SELECT id FROM i)) AND j.id = i.id AND j.token = i.token
  AND (j.state = 'active') IS TRUE
RETURNING j.id, j.cancel_requested"""

    def finish(
        self,
        logs: bool = True,
        again: bool = True,
        followups: bool = False,
        events: bool = False,
        ends: bool = False,
    ) -> str:
        """The finish of a batch. Without ``logs`` (no outcome carries lines) the log-cap
        expression is left out, and without ``again`` (every outcome sent for the first
        time) the replay lookup: together ~10 µs of server time per job
        (docs/profiles.md "PostgreSQL finish after the hardening"). With ``followups``,
        the follow-ups of the jobs it finishes are written too (``_claim_jobs``, after the
        finish's parameters), their events after the outcomes' and their rows returned:
        ('k', key) claimed, ('j', id, scheduled) written; an outcome's row is ('f', id).
        With ``events``, an item's ``events`` (a flow step's own: arrays of type, job_id,
        task, queue, data, at, run) go into the log before every outcome's event, only for
        the items it finishes (a replayed item is not finished again). With ``ends``, an
        item's ``rend`` (a run's end: end key, mark, live key, name, event as ``events``)
        is written for the items it completes: the end key set unless present (one item
        per key), then the live key deleted while it holds the name and the event logged
        after every other; returned as ('e', id, deleted) for each end key set."""
        s = self.s
        set_logs = (
            _set_logs("j.logs", "i.logs", "i.dropped", "i.ml", "i.mb")
            if logs
            else "logs_dropped = logs_dropped + coalesce(i.dropped, 0)"
        )
        replay = f"""), again AS (
  -- A finish sent again after its reply was lost: the row keeps the call that finished
  -- it, so it is reported applied and not written twice. A reclaim or a retry clears it.
  -- (A scalar subquery: one primary-key lookup per item; a join scanned the whole table.)
  SELECT i.id FROM i
  WHERE i.again AND (SELECT j.finish_token FROM {s}.jobs j
         WHERE j.id = i.id AND j.token IS DISTINCT FROM i.token) = i.call"""
        outcomes = """SELECT CASE kind WHEN 'completed' THEN 'job.completed'
                   WHEN 'retry' THEN 'job.retrying' WHEN 'failed' THEN 'job.failed'
                   ELSE 'job.cancelled' END,
         id, task, queue,
         CASE kind WHEN 'completed' THEN jsonb_build_object('attempt', attempts)
                   WHEN 'retry' THEN jsonb_build_object('attempt', attempts, 'delay', delay,
                                                        'error', error)
                   WHEN 'failed' THEN jsonb_build_object('attempt', attempts, 'error', error)
                   ELSE '{}'::jsonb END
  FROM upd"""
        counted = tally(s, "upd", "'active'", "r.state")
        claims = woken = tag = flag = returned = closing = ""
        columns = "type, job_id, task, queue, data"
        if followups or events or ends:
            # The steps' own events (each item's in order), the outcomes' events, then
            # those of the follow-ups they caused.
            parts = [f"SELECT 1, '', 0::int8, o.*, now(), NULL::text FROM ({outcomes}) o"]
            if events:
                parts.insert(
                    0,
                    """SELECT 0, u.id, e.ord, e.v->>0, e.v->>1, e.v->>2, e.v->>3, e.v->4,
      coalesce(to_timestamp((e.v->>5)::float8), now()), e.v->>6
    FROM upd u, jsonb_array_elements(u.evs) WITH ORDINALITY AS e(v, ord)""",
                )
            if followups:
                parts.append(
                    "SELECT 2, '', 0, 'job.queued', id, task, queue, '{}'::jsonb, now(), NULL "
                    "FROM ins"
                )
            if ends:
                parts.append(
                    """SELECT 3, d.id, 0, d.e->>0, NULL, NULL, NULL, d.e->4,
      coalesce(to_timestamp((d.e->>5)::float8), now()), d.e->>6 FROM unlived d"""
                )
            union = "\n    UNION ALL ".join(parts)
            columns += ", at, run"
            outcomes = f"""SELECT type, id, task, queue, data, at, run FROM (
    {union}
  ) e(n, k, ord, type, id, task, queue, data, at, run) ORDER BY n, k, ord"""
        if followups:
            claims = ", " + self._claim_jobs("upd")
            moved = """(SELECT queue, 'active'::text AS was, state FROM upd
    UNION ALL SELECT queue, NULL, 'queued' FROM ins)"""
            counted = tally(s, moved, "r.was", "r.state")
            woken = " UNION SELECT queue FROM ins"
            tag, flag = "'f', ", ", NULL::bool"
            returned = """
UNION ALL SELECT 'k', key, NULL::bool FROM claimed
UNION ALL SELECT 'j', id, scheduled FROM ins"""
        if ends:
            tag, flag = "'f', ", ", NULL::bool"
            # One item per end key (a statement upserts a row once), keys in order.
            closing = f""", closer AS (
  SELECT DISTINCT ON (rend->>0) id, rend FROM upd
  WHERE rend IS NOT NULL AND kind = 'completed' ORDER BY rend->>0, id
), marked AS (
  INSERT INTO {s}.kv AS kv (key, value, expires_at)
  SELECT rend->>0, rend->>1, NULL FROM closer ORDER BY 1
  ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at
  WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= now()
  RETURNING kv.key
), filed AS (
  INSERT INTO {s}.kv AS kv (key, value, expires_at)
  SELECT c.rend->>5, c.rend->>1, NULL FROM closer c JOIN marked m ON m.key = c.rend->>0
  WHERE c.rend->>5 IS NOT NULL ORDER BY 1
  ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = NULL
), unlived AS (
  DELETE FROM {s}.kv AS kv USING closer c, marked m
  WHERE m.key = c.rend->>0 AND kv.key = c.rend->>2 AND kv.value = c.rend->>3
    AND (kv.expires_at IS NULL OR kv.expires_at > now())
  RETURNING c.id, c.rend->4 AS e
)"""
            returned += """
UNION ALL SELECT 'e', c.id, EXISTS (SELECT 1 FROM unlived d WHERE d.id = c.id)
  FROM closer c JOIN marked m ON m.key = c.rend->>0"""
        evs, evs_type, evs_out = (
            (", t.events", ", events jsonb", ", i.events AS evs") if events else ("", "", "")
        )
        if ends:
            evs, evs_type, evs_out = (
                f"{evs}, t.rend",
                f"{evs_type}, rend jsonb",
                f"{evs_out}, i.rend",
            )
        return f"""
WITH i AS (
  -- One JSON document, not eight arrays: psycopg's array dumpers cost the worker several
  -- times orjson's CPU per job (docs/profiles.md). Results (JSON bytes) travel base64.
  SELECT t.id, t.token, t.kind, decode(t.result, 'base64') AS result, t.error, t.delay,
         t.refund, t.logs, t.dropped, %s::int AS ml, %s::int AS mb, t.call, t.again{evs}
  FROM jsonb_to_recordset(%s::jsonb) AS t(id text, token text, kind text, result text,
                                          error jsonb, delay float8, refund bool, logs jsonb,
                                          dropped int, call text, again bool{evs_type})
), upd AS (
  UPDATE {s}.jobs j SET
    state = CASE i.kind WHEN 'retry' THEN 'queued' ELSE i.kind END,
    result = CASE WHEN i.kind = 'completed' THEN i.result ELSE j.result END,
    error = CASE WHEN i.kind = 'completed' THEN NULL ELSE i.error END,
    attempts = CASE WHEN i.kind = 'retry' AND i.refund THEN j.attempts - 1
               ELSE j.attempts END,
    finished_at = CASE WHEN i.kind = 'retry' THEN j.finished_at ELSE now() END,
    run_at = CASE WHEN i.kind = 'retry' THEN now() + make_interval(secs => i.delay)
             ELSE j.run_at END,
    seq = CASE WHEN i.kind = 'retry' THEN nextval('{s}.jobs_seq_seq') ELSE j.seq END,
    worker = CASE WHEN i.kind = 'retry' THEN NULL ELSE j.worker END,
    cancel_requested = CASE WHEN i.kind = 'retry' THEN false ELSE j.cancel_requested END,
    token = NULL, expires_at = NULL, finish_token = i.call,
    {set_logs}
  -- The rows by primary key (the ids as one array), the state tested on them only (IS
  -- TRUE, which no index matches): a scan of the state's index read every active row and
  -- every dead one a vacuum had not removed yet, for each finish.
  FROM i WHERE j.id = ANY(ARRAY(SELECT id FROM i)) AND j.id = i.id AND j.token = i.token
    AND (j.state = 'active') IS TRUE
  RETURNING j.id, j.task, j.queue, j.state, j.attempts, i.kind, i.delay, i.error,
    -- A run() caller waits for this job (it holds it): its record goes in a NOTIFY, so
    -- the caller has the result without reading the row again.
    CASE WHEN j.holds > 0 AND i.kind <> 'retry' AND strpos(j.id, ' ') = 0
         THEN j.id || ' ' || {_RECORD} END AS rec{evs_out}
{replay if again else ""}){claims}{closing}, ev AS (
  INSERT INTO {s}.events ({columns})
  {outcomes}
), {counted}, done AS (
  SELECT pg_notify({self.done_channel}, CASE WHEN sum(length(id) + 1) <= 7900
                                         THEN string_agg(id, ',') ELSE '*' END)
  FROM upd WHERE state <> 'queued' HAVING count(*) > 0
), woke AS (
  SELECT pg_notify({self.jobs_channel}, q.queue)
  FROM (SELECT DISTINCT queue FROM upd WHERE state = 'queued'{woken}) q
), record AS (
  SELECT pg_notify({self.record_channel}, rec) FROM upd
  WHERE rec IS NOT NULL AND octet_length(rec) <= {RECORD_MAX}
)
SELECT {tag}id{flag} FROM upd, (SELECT count(*) FROM done) a, (SELECT count(*) FROM woke) b,
  (SELECT count(*) FROM record) c
{f"UNION ALL SELECT {tag}id{flag} FROM again" if again else ""}{returned}"""

    def update(self) -> str:
        s = self.s
        return f"""
WITH upd AS (
  UPDATE {s}.jobs SET progress = coalesce(%(p)s::jsonb, progress),
    {_set_logs("logs", "%(l)s::jsonb", "%(d)s::int", "%(ml)s::int", "%(mb)s::int")}
  WHERE id = %(id)s AND token = %(t)s AND state = 'active'
  RETURNING id, task, queue
), ev AS (
  INSERT INTO {s}.events (type, job_id, task, queue, data)
  SELECT 'job.progress', id, task, queue, jsonb_build_object('progress', %(p)s::jsonb)
  FROM upd WHERE %(p)s::jsonb IS NOT NULL
)
SELECT count(*) FROM upd"""

    def reclaim(self) -> str:
        s = self.s
        # SET reads the old row: this death is stall number j.stalls + 1.
        spent = "(NOT j.cancel_requested AND j.stalls >= j.max_stalls)"
        ends = f"(j.cancel_requested OR {spent})"
        return f"""
WITH exp AS (
  SELECT id, worker FROM {s}.jobs WHERE state = 'active' AND expires_at <= now()
  ORDER BY expires_at LIMIT 1000 FOR UPDATE SKIP LOCKED
), upd AS (
  UPDATE {s}.jobs j SET
    state = CASE WHEN j.cancel_requested THEN 'cancelled' WHEN {spent} THEN 'failed'
            ELSE 'queued' END,
    attempts = j.attempts - 1, stalls = j.stalls + 1,
    error = jsonb_build_object('type', 'LeaseExpired', 'traceback', '', 'message',
      CASE WHEN {spent} THEN format(
             'killed its worker %%s times: the lease expired each time (max_stalls %%s)',
             j.stalls + 1, j.max_stalls)
           ELSE format('worker %%s stopped renewing its lease (stall %%s, max_stalls %%s)',
                       j.worker, j.stalls + 1, j.max_stalls) END),
    finished_at = CASE WHEN {ends} THEN now() ELSE j.finished_at END,
    run_at = CASE WHEN {ends} THEN j.run_at ELSE now() END,
    seq = CASE WHEN {ends} THEN j.seq ELSE nextval('{s}.jobs_seq_seq') END,
    worker = CASE WHEN {ends} THEN j.worker ELSE NULL END,
    cancel_requested = CASE WHEN {ends} THEN j.cancel_requested ELSE false END,
    token = NULL, expires_at = NULL, finish_token = NULL
  FROM exp WHERE j.id = exp.id
  RETURNING j.id, j.task, j.queue, j.state, j.stalls, exp.worker, j.error
), ev AS (
  INSERT INTO {s}.events (type, job_id, task, queue, data)
  SELECT e.type, upd.id, upd.task, upd.queue, e.data
  FROM upd, LATERAL (VALUES
      (1, 'job.stalled', jsonb_build_object('stalls', upd.stalls, 'worker', upd.worker)),
      (2, CASE upd.state WHEN 'cancelled' THEN 'job.cancelled' ELSE 'job.failed' END,
       CASE upd.state WHEN 'cancelled' THEN '{{}}'::jsonb
            ELSE jsonb_build_object('stalls', upd.stalls, 'error', upd.error) END)
  ) AS e(n, type, data)
  WHERE e.n = 1 OR upd.state <> 'queued'
  ORDER BY upd.id, e.n
), {tally(s, "upd", "'active'", "r.state")}, done AS (
  SELECT pg_notify({self.done_channel}, '*') FROM upd
  WHERE state <> 'queued' HAVING count(*) > 0
), woke AS (
  SELECT pg_notify({self.jobs_channel}, q.queue)
  FROM (SELECT DISTINCT queue FROM upd WHERE state = 'queued') q
)
SELECT id FROM upd, (SELECT count(*) FROM done) a, (SELECT count(*) FROM woke) b"""

    def next_due(self) -> str:
        s = self.s
        return f"""
SELECT extract(epoch from min(d.run_at) - now())::float8
FROM unnest(%s::text[]) AS q(name),
     LATERAL (SELECT run_at FROM {s}.jobs
              WHERE state = 'queued' AND queue = q.name ORDER BY run_at LIMIT 1) d
WHERE NOT EXISTS (SELECT 1 FROM {s}.queues WHERE name = q.name AND paused)"""

    def release_drop(self) -> str:
        """After a release: a finished job left without holds whose own keep_for has passed
        goes now. (A second statement: one cannot delete the rows its own CTE updated. Of
        two releases at once, the later one's drop sees both decrements.)"""
        return f"""
WITH d AS (
  DELETE FROM {self.s}.jobs WHERE id = ANY(%s::text[])
    AND state IN ('completed', 'failed', 'cancelled') AND holds = 0 AND keep_for IS NOT NULL
    AND finished_at + make_interval(secs => keep_for) <= now()
  RETURNING queue, state
), {tally(self.s, "d", "r.state", "NULL")}
SELECT count(*) FROM d"""

    def release(self) -> str:
        return f"""
UPDATE {self.s}.jobs SET holds = greatest(holds - 1, 0) WHERE id = ANY(%s::text[])"""

    def finished(self) -> str:
        return f"""
SELECT {JOB_COLUMNS} FROM {self.s}.jobs
WHERE id = ANY(%s::text[]) AND state IN ('completed', 'failed', 'cancelled')"""

    # -- inspecting and controlling ----------------------------------------------------
    def get(self) -> str:
        return f"SELECT {JOB_COLUMNS} FROM {self.s}.jobs WHERE id = %s"

    def get_many(self) -> str:
        return f"SELECT {JOB_COLUMNS} FROM {self.s}.jobs WHERE id = ANY(%s)"

    def cancel(self) -> str:
        s = self.s
        q = "state = 'queued'"
        return f"""
WITH upd AS (
  UPDATE {s}.jobs SET
    state = CASE WHEN {q} THEN 'cancelled' ELSE state END,
    finished_at = CASE WHEN {q} THEN now() ELSE finished_at END,
    token = CASE WHEN {q} THEN NULL ELSE token END,
    expires_at = CASE WHEN {q} THEN NULL ELSE expires_at END,
    cancel_requested = cancel_requested OR state = 'active'
  WHERE id = %s AND {_LIVE}
  RETURNING id, task, queue, state
), ev AS (
  INSERT INTO {s}.events (type, job_id, task, queue)
  SELECT 'job.cancelled', id, task, queue FROM upd WHERE state = 'cancelled'
), {tally(s, "upd", "CASE r.state WHEN 'cancelled' THEN 'queued' ELSE r.state END", "r.state")},
done AS (
  SELECT pg_notify({self.done_channel}, id) FROM upd WHERE state = 'cancelled'
)
SELECT state FROM upd, (SELECT count(*) FROM done) n"""

    def state_of(self) -> str:
        return f"SELECT state, run_at > now() FROM {self.s}.jobs WHERE id = %s"

    def retry(self, edit: bool = False) -> str:
        """Parameters: %(id)s; with ``edit``, the new payload %(data)s, the payload the job
        must still hold %(old)s (read just before: a change meanwhile retries nothing), the
        event's data %(note)s."""
        s = self.s
        data = ", data = %(data)s" if edit else ""
        still = " AND j.data = %(old)s" if edit else ""
        note = "CAST(%(note)s AS text)::jsonb" if edit else """'{"retried": true}'"""
        return f"""
WITH upd AS (
  -- The row locked first, so the state it leaves is the one it has (for the counts).
  UPDATE {s}.jobs j SET state = 'queued', attempts = 0, stalls = 0, finished_at = NULL,
    error = NULL, result = NULL, run_at = now(), seq = nextval('{s}.jobs_seq_seq'), token = NULL,
    expires_at = NULL, worker = NULL, cancel_requested = false, finish_token = NULL{data}
  FROM (SELECT id, state AS was FROM {s}.jobs WHERE id = %(id)s FOR UPDATE) w
  WHERE j.id = w.id AND j.state IN ('failed', 'cancelled'){still}
    AND (j.dedup_key IS NULL OR NOT EXISTS (
      SELECT 1 FROM {s}.jobs o
      WHERE o.queue = j.queue AND o.dedup_key = j.dedup_key AND o.{_LIVE}))
  RETURNING j.id, j.task, j.queue, w.was
), ev AS (
  INSERT INTO {s}.events (type, job_id, task, queue, data)
  SELECT 'job.queued', id, task, queue, {note} FROM upd
), {tally(s, "upd", "r.was", "'queued'")}, note AS (
  SELECT pg_notify({self.jobs_channel}, queue) FROM upd
)
SELECT id FROM upd, (SELECT count(*) FROM note) n"""

    def pause(self) -> str:
        return f"""
INSERT INTO {self.s}.queues (name, paused) VALUES (%s, true)
ON CONFLICT (name) DO UPDATE SET paused = true"""

    def resume(self) -> str:
        return f"""
WITH upd AS (UPDATE {self.s}.queues SET paused = false WHERE name = %(q)s)
SELECT pg_notify({self.jobs_channel}, %(q)s)"""

    def paused(self) -> str:
        return f"SELECT name FROM {self.s}.queues WHERE paused"

    # -- coordination ------------------------------------------------------------------
    def set_if_absent(self) -> str:
        return f"""
INSERT INTO {self.s}.kv AS kv (key, value, expires_at)
VALUES (%(k)s, %(v)s, now() + make_interval(secs => %(ttl)s))
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at
WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= now()
RETURNING 1"""

    def set_if_absent_unless(self) -> str:
        """set_if_absent, but nothing while the key %(u)s is live (a run's end marker)."""
        return f"""
INSERT INTO {self.s}.kv AS kv (key, value, expires_at)
SELECT %(k)s, %(v)s, now() + make_interval(secs => %(ttl)s)
WHERE NOT EXISTS (
  SELECT 1 FROM {self.s}.kv AS u
  WHERE u.key = %(u)s AND (u.expires_at IS NULL OR u.expires_at > now()))
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at
WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= now()
RETURNING 1"""

    def set_if_absent_many(self) -> str:
        """set_if_absent (with or without ``unless``) for several distinct keys at once,
        inserted in key order, so two such statements never wait on each other in a cycle;
        returns the keys set."""
        return f"""
INSERT INTO {self.s}.kv AS kv (key, value, expires_at)
SELECT w.key, w.value, now() + make_interval(secs => w.ttl)
FROM unnest(%(k)s::text[], %(v)s::text[], %(ttl)s::float8[], %(u)s::text[])
     AS w(key, value, ttl, unless)
WHERE w.unless IS NULL OR NOT EXISTS (
  SELECT 1 FROM {self.s}.kv AS u
  WHERE u.key = w.unless AND (u.expires_at IS NULL OR u.expires_at > now()))
ORDER BY w.key
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at
WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= now()
RETURNING kv.key"""

    def counter_add(self) -> str:
        expired = "(c.expires_at IS NOT NULL AND c.expires_at <= now())"
        return f"""
INSERT INTO {self.s}.counters AS c (key, value, expires_at)
VALUES (%(k)s, %(n)s, now() + make_interval(secs => %(ttl)s))
ON CONFLICT (key) DO UPDATE SET
  value = CASE WHEN {expired} THEN EXCLUDED.value ELSE c.value + EXCLUDED.value END,
  expires_at = CASE WHEN {expired} OR c.expires_at IS NULL THEN EXCLUDED.expires_at
               ELSE c.expires_at END
RETURNING value"""

    def counter_add_many(self, k: str = "%(k)s", n: str = "%(n)s", ttl: str = "%(ttl)s") -> str:
        """counter_add for several distinct keys at once, inserted in key order (so two
        such statements never wait on each other in a cycle). Returns key, value rows.
        ``k``, ``n``, ``ttl``: the arrays' placeholders."""
        expired = "(c.expires_at IS NOT NULL AND c.expires_at <= now())"
        return f"""
INSERT INTO {self.s}.counters AS c (key, value, expires_at)
SELECT w.key, w.n, now() + make_interval(secs => w.ttl)
FROM unnest({k}::text[], {n}::int8[], {ttl}::float8[]) AS w(key, n, ttl)
ORDER BY w.key
ON CONFLICT (key) DO UPDATE SET
  value = CASE WHEN {expired} THEN EXCLUDED.value ELSE c.value + EXCLUDED.value END,
  expires_at = CASE WHEN {expired} OR c.expires_at IS NULL THEN EXCLUDED.expires_at
               ELSE c.expires_at END
RETURNING c.key, c.value"""

    def kv(self) -> tuple[str, str, str, str, str]:
        """get, set, delete (optionally only while it holds a value), scan by prefix (one
        range of the key index, whose keys compare in byte order: %(end)s is the prefix
        with its last character's next), and scan by a prefix with no such range."""
        s = self.s
        live = "(expires_at IS NULL OR expires_at > now())"
        return (
            f"SELECT value FROM {s}.kv WHERE key = %s AND {live}",
            f"""
INSERT INTO {s}.kv (key, value, expires_at)
VALUES (%s, %s, now() + make_interval(secs => %s))
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at""",
            f"""
DELETE FROM {s}.kv WHERE key = %(k)s AND {live}
  AND (%(v)s::text IS NULL OR value = %(v)s::text) RETURNING 1""",
            f"SELECT key, value FROM {s}.kv WHERE key >= %(p)s AND key < %(end)s "
            f"AND starts_with(key, %(p)s) AND {live} ORDER BY key",
            f"SELECT key, value FROM {s}.kv WHERE starts_with(key, %(p)s) AND {live} ORDER BY key",
        )

    def kv_get_many(self) -> str:
        return (
            f"SELECT key, value FROM {self.s}.kv WHERE key = ANY(%(k)s::text[]) "
            "AND (expires_at IS NULL OR expires_at > now())"
        )

    def kv_page(self, shape: tuple[bool, ...]) -> str:
        """A scan by prefix in key order, of shape (one range of the key index, highest
        first, past %(after)s, at most %(limit)s keys)."""
        ranged, reverse, after, limited = shape
        sql = f"SELECT key, value FROM {self.s}.kv WHERE starts_with(key, %(p)s)"
        if ranged:
            sql += " AND key >= %(p)s AND key < %(end)s"
        if after:
            sql += " AND key < %(after)s" if reverse else " AND key > %(after)s"
        sql += " AND (expires_at IS NULL OR expires_at > now())"
        sql += " ORDER BY key DESC" if reverse else " ORDER BY key"
        return sql + (" LIMIT %(limit)s" if limited else "")

    def kv_delete_many(self) -> str:
        """kv_delete for several distinct keys at once, each only while it holds its value
        if one is given; rows are locked in key order, so two such statements never wait
        on each other in a cycle. Returns the keys deleted."""
        s = self.s
        return f"""
WITH gone AS (
  SELECT kv.key FROM {s}.kv AS kv
  JOIN unnest(%(k)s::text[], %(v)s::text[]) AS d(key, value) ON kv.key = d.key
  WHERE (kv.expires_at IS NULL OR kv.expires_at > now())
    AND (d.value IS NULL OR kv.value = d.value)
  ORDER BY kv.key
  FOR UPDATE OF kv
)
DELETE FROM {s}.kv AS kv USING gone WHERE kv.key = gone.key RETURNING kv.key"""

    def kv_extend(self) -> str:
        """Push back the expiry of the keys that still hold their values (owner-checked)."""
        return f"""
UPDATE {self.s}.kv AS kv SET expires_at = now() + make_interval(secs => %(ttl)s)
FROM unnest(%(k)s::text[], %(v)s::text[]) AS held(key, value)
WHERE kv.key = held.key AND kv.value = held.value
  AND (kv.expires_at IS NULL OR kv.expires_at > now())
RETURNING kv.key"""

    # -- events and workers ------------------------------------------------------------
    def publish(self) -> str:
        return f"""
INSERT INTO {self.s}.events (type, job_id, task, queue, data, at, run)
SELECT t.type, t.job_id, t.task, t.queue, t.data, coalesce(to_timestamp(t.at), now()), t.run
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::jsonb[], %s::float8[],
            %s::text[])
     WITH ORDINALITY AS t(type, job_id, task, queue, data, at, run, ord)
ORDER BY t.ord"""

    def run_events(self) -> str:
        # As events(): in (xid, id) order, only transactions older than every one in
        # flight, so a reader that resumes after a position misses nothing committed later.
        return f"""
SELECT id, xid::text::int8 AS xid_int, type, job_id, task, queue, data, {_epoch("at")}
FROM {self.s}.events
WHERE run = %s AND (xid, id) > (%s::text::xid8, %s::int8)
  AND xid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY xid, id LIMIT %s"""

    def events(self) -> str:
        # In (xid, id) order and only events of transactions older than every one still in
        # flight: that order only grows at its end (ids alone do not: a transaction that
        # took a lower id can commit after a read moved past a higher one), see positions.
        # The xid goes out as xid_int: an output column named xid is what ORDER BY would
        # sort by (a cast, so a sort of the whole log instead of the index's order).
        return f"""
SELECT id, xid::text::int8 AS xid_int, type, job_id, task, queue, data, {_epoch("at")}
FROM {self.s}.events
WHERE (xid, id) > (%s::text::xid8, %s::int8)
  AND xid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY xid, id LIMIT %s"""

    def legacy_position(self) -> str:
        """Where a plain id ``c`` saved before the (xid, id) order stands in it: ``(xid,
        c)`` with the oldest xid of the events past ``c``, so none of them is skipped (a
        few of newer transactions that took ids up to ``c`` are read again)."""
        return f"SELECT min(xid)::text::int8 FROM {self.s}.events WHERE id > %s"

    def events_head(self) -> str:
        # The newest event of the transactions older than every one in flight: a reader
        # starting there skips nothing committed later (those get larger positions).
        return f"""
SELECT xid::text::int8 AS xid_int, id FROM {self.s}.events
WHERE xid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY xid DESC, id DESC LIMIT 1"""

    def job_events(self) -> str:
        # Committed events only, like any read; no in-flight horizon: this is no cursor.
        return f"""
SELECT id, xid::text::int8 AS xid_int, type, job_id, task, queue, data, {_epoch("at")}
FROM {self.s}.events WHERE job_id = %s AND run IS NULL ORDER BY id DESC LIMIT %s"""

    def beat(self) -> str:
        return f"""
INSERT INTO {self.s}.workers (id, info, last_seen, expires_at)
VALUES (%s, %s::jsonb, now(), now() + make_interval(secs => %s))
ON CONFLICT (id) DO UPDATE SET info = EXCLUDED.info, last_seen = EXCLUDED.last_seen,
  expires_at = EXCLUDED.expires_at
RETURNING {_epoch("last_seen")}"""

    def workers(self) -> str:
        return f"""
SELECT info, {_epoch("last_seen")} FROM {self.s}.workers WHERE expires_at > now()
ORDER BY info->>'started_at', id"""

    def counts(self, in_queues: bool) -> str:
        """Per queue and state: the counters' sum and how many rows made it. 'scheduled' is
        the part of 'queued' not due yet, a matter of time no write marks: counted in the
        due index on whichever side of now() is small (up to _PROBE entries each), the
        whole range only when both are large; one snapshot, so it agrees with the sums."""
        s = self.s
        where = "WHERE queue = ANY(%(q)s::text[])" if in_queues else ""

        def side(cond: str, limit: str) -> str:
            return (
                f"(SELECT count(*) FROM (SELECT 1 FROM {s}.jobs WHERE state = 'queued' "
                f"AND queue = c.queue AND run_at {cond} now(){limit}) x)"
            )

        probe = f" LIMIT {_PROBE + 1}"
        return f"""
WITH c AS (
  SELECT queue, state, sum(n) AS n, count(*) AS parts FROM {s}.job_counts {where}
  GROUP BY 1, 2
)
SELECT queue, state, n, parts FROM c
UNION ALL
SELECT c.queue, 'scheduled', CASE WHEN a.k <= {_PROBE} THEN a.k
  WHEN {side("<=", probe)} <= {_PROBE} THEN c.n - {side("<=", probe)}
  ELSE {side(">", "")} END, 0
FROM c, LATERAL (SELECT {side(">", probe)} AS k) a
WHERE c.state = 'queued' AND c.n > 0"""

    def fold_counts(self) -> str:
        """The counters' rows folded into one per (queue, state). A row a transaction in
        flight adds is not seen, so it stays for the next fold; two folds at once wait on
        each other's row locks and the second skips the rows the first deleted."""
        s = self.s
        return f"""
WITH d AS (DELETE FROM {s}.job_counts RETURNING queue, state, n)
INSERT INTO {s}.job_counts (queue, state, n)
SELECT queue, state, sum(n) FROM d GROUP BY 1, 2 HAVING sum(n) <> 0"""

    def newest(self, by_queue: bool, state: str | None, extra: str) -> str:
        """Jobs newest first, LIMIT %(limit)s OFFSET %(offset)s: read from one index range
        per state (queue first when ``by_queue``), or merged from the five states' ranges,
        so a page reads offset + limit index entries per range whatever the table holds.
        ``extra``: more conditions (AND ...)."""
        s = self.s
        queue = "AND queue = %(queue)s" if by_queue else ""
        order = "ORDER BY created_at DESC, id DESC"
        if state is not None:
            return f"""
SELECT {JOB_COLUMNS} FROM {s}.jobs WHERE state = '{state}' {queue} {extra}
{order} LIMIT %(limit)s OFFSET %(offset)s"""
        return f"""
SELECT {JOB_COLUMNS} FROM unnest({_STATES}) AS st(name) CROSS JOIN LATERAL (
  SELECT * FROM {s}.jobs WHERE state = st.name {queue} {extra}
  {order} LIMIT %(limit)s::int8 + %(offset)s::int8) j
{order} LIMIT %(limit)s OFFSET %(offset)s"""

    def sweep(self) -> list[str]:
        """Housekeeping run now and then by reclaim: bound the log, drop expired keys."""
        s = self.s
        return [
            # Events from a hook group's floor (a position, see positions.py) on stay, up
            # to HOLD_FACTOR * max_events.
            f"""
WITH h AS (
  SELECT min(value::numeric) AS v FROM {s}.kv
  WHERE key LIKE %(hold)s AND (expires_at IS NULL OR expires_at > now())
), m AS (SELECT max(id) AS top FROM {s}.events)
DELETE FROM {s}.events e USING h, m
WHERE e.id <= m.top - %(keep)s AND (e.id <= m.top - %(held)s OR h.v IS NULL
  OR (e.xid, e.id) < (div(h.v, {SCALE})::text::xid8, mod(h.v, {SCALE})::int8))""",
            f"DELETE FROM {s}.kv WHERE expires_at <= now()",
            f"DELETE FROM {s}.counters WHERE expires_at <= now()",
            f"DELETE FROM {s}.workers WHERE expires_at <= now() - interval '1 hour'",
            self.fold_counts(),
        ]


class Rendered(dict[tuple[bool, ...], str]):
    """Statement texts by shape, each rendered the first time it is asked for."""

    def __init__(self, render: Callable[[tuple[bool, ...]], str]) -> None:
        super().__init__()
        self._render = render

    def __missing__(self, shape: tuple[bool, ...]) -> str:
        text = self[shape] = self._render(shape)
        return text


class Queries:
    """The statement texts, rendered once per backend object (not per call)."""

    def __init__(self, s: Statements) -> None:
        self.job_columns = JOB_COLUMNS
        # Indexed by (any job has a dedup key, a single job).
        self.enqueue = {(k, o): s.enqueue(k, o) for k in (False, True) for o in (False, True)}
        self.counts_all = s.counts(False)
        self.counts_of = s.counts(True)
        self.fold_counts = s.fold_counts()
        self.live_by_key = s.live_by_key()
        self.claim = s.claim()
        self.renew = s.renew()
        # Indexed by (any outcome carries lines, any outcome was sent before, any outcome
        # carries a flow step's own events, any outcome carries a run's end).
        # Rendered at first use: 32 shapes of ~7 KB each, most of which a process never
        # sends (a PostgreSQL worker's RSS is an issue 16 figure).
        self.finish = Rendered(
            lambda shape: s.finish(shape[0], shape[1], events=shape[2], ends=shape[3])
        )
        # The same with follow-ups (Outcome.followups), indexed alike.
        self.finish_followups = Rendered(
            lambda shape: s.finish(
                shape[0], shape[1], followups=True, events=shape[2], ends=shape[3]
            )
        )
        self.update = s.update()
        self.reclaim = s.reclaim()
        self.next_due = s.next_due()
        self.finished = s.finished()
        self.get = s.get()
        self.get_many = s.get_many()
        self.cancel = s.cancel()
        self.state_of = s.state_of()
        self.retry = s.retry()
        self.edit = s.retry(edit=True)
        self.pause = s.pause()
        self.resume = s.resume()
        self.paused = s.paused()
        self.set_if_absent = s.set_if_absent()
        self.set_if_absent_unless = s.set_if_absent_unless()
        self.set_if_absent_many = s.set_if_absent_many()
        self.enqueue_claimed = s.enqueue_claimed()
        self.enqueue_claimed_with = s.enqueue_claimed(written=True)
        self.run_events = s.run_events()
        self.counter_add = s.counter_add()
        self.counter_add_many = s.counter_add_many()
        self.kv_get, self.kv_set, self.kv_delete, self.kv_scan, self.kv_scan_all = s.kv()
        self.kv_extend = s.kv_extend()
        self.kv_get_many = s.kv_get_many()
        # Indexed by (a key range, highest first, past a key, a limit).
        self.kv_page = Rendered(s.kv_page)
        self.kv_delete_many = s.kv_delete_many()
        self.replace = s.replace()
        self.hold_by_key = s.hold_by_key()
        self.release = s.release()
        self.release_drop = s.release_drop()
        self.publish = s.publish()
        self.events = s.events()
        self.job_events = s.job_events()
        self.legacy_position = s.legacy_position()
        self.events_head = s.events_head()
        self.beat = s.beat()
        self.workers = s.workers()
        self.quarantine = quarantine_statement(s)


def quarantine_statement(s: Statements) -> str:
    """Fail one job whose record does not decode; its event and NOTIFY commit with it."""
    return f"""
WITH upd AS (
  UPDATE {s.s}.jobs SET state = 'failed', error = %(e)s::jsonb, finished_at = now(),
    token = NULL, expires_at = NULL, cancel_requested = false,
    result = CASE WHEN %(clear)s THEN NULL ELSE result END
  FROM (SELECT state AS was FROM {s.s}.jobs WHERE id = %(id)s FOR UPDATE) w
  WHERE id = %(id)s
  RETURNING {JOB_COLUMNS}, w.was
), {tally(s.s, "upd", "r.was", "'failed'")}, ev AS (
  INSERT INTO {s.s}.events (type, job_id, task, queue, data)
  SELECT 'job.failed', id, task, queue,
         jsonb_build_object('attempt', attempts, 'error', %(e)s::jsonb)
  FROM upd
), done AS (
  SELECT pg_notify({s.done_channel}, string_agg(id, ',')) FROM upd HAVING count(*) > 0
)
SELECT upd.* FROM upd, (SELECT count(*) FROM done) n"""  # its last column: the old state


# Purge: each statement deletes and counts in one round trip. A job with its own keep_for
# that no run() caller holds follows only that (purge_own); it still counts toward keep_last.
_OWN = "keep_for IS NOT NULL AND holds = 0"


def _scope(in_queue: bool) -> str:
    return "state = %s" + (" AND queue = %s" if in_queue else "")


def _queues(finished: str, in_queue: bool) -> str:
    """The queues with finished jobs of one state, seeking from one to the next in the
    per-queue index (or the one queue asked for)."""
    if in_queue:
        return "queues(name) AS (SELECT %(queue)s::text)"
    return (
        f"queues(name) AS ((SELECT queue {finished} ORDER BY queue LIMIT 1) UNION ALL "
        f"SELECT (SELECT queue {finished} AND queue > q.name ORDER BY queue LIMIT 1) "
        "FROM queues q WHERE q.name IS NOT NULL)"
    )


def purge_older(s: str, state: str, in_queue: bool, retention: bool) -> str:
    """Delete finished jobs of ``state`` (and queue) finished more than %(age)s seconds
    ago: a range of the per-queue index for each queue (the only index on finished jobs,
    so a finish inserts into one index fewer)."""
    not_own = f" AND NOT ({_OWN})" if retention else ""
    finished = f"FROM {s}.jobs WHERE state = '{state}'"
    return (
        f"WITH RECURSIVE {_queues(finished, in_queue)}, d AS (DELETE FROM {s}.jobs j "
        f"USING queues q WHERE j.state = '{state}' AND j.queue = q.name "
        f"AND j.finished_at <= now() - make_interval(secs => %(age)s){not_own} "
        f"RETURNING j.queue, j.state), {tally(s, 'd', 'r.state', 'NULL')} "
        "SELECT count(*) FROM d"
    )


def purge_own(s: str, in_queue: bool) -> str:
    """Delete finished jobs of a state (and queue) whose own keep_for has passed."""
    return (
        f"WITH d AS (DELETE FROM {s}.jobs WHERE {_scope(in_queue)} AND {_OWN} AND "
        "finished_at + make_interval(secs => keep_for) <= now() "
        f"RETURNING queue, state), {tally(s, 'd', 'r.state', 'NULL')} SELECT count(*) FROM d"
    )


def purge_past_keep(s: str, state: str, in_queue: bool, retention: bool) -> str:
    """Delete each queue's finished jobs of ``state`` beyond its newest %(keep)s."""
    not_own = f" AND NOT ({_OWN})" if retention else ""
    # The state is written out (an enum's value), so the planner can use the partial index.
    finished = f"FROM {s}.jobs WHERE state = '{state}'"
    queues = _queues(finished, in_queue)
    # Each queue's (keep+1)-th newest is its edge; it and everything older go. One
    # statement, one snapshot: a job finished meanwhile is neither counted nor deleted.
    return (
        f"WITH RECURSIVE {queues}, edges AS MATERIALIZED (SELECT q.name, e.finished_at, "
        f"e.seq FROM queues q CROSS JOIN LATERAL (SELECT finished_at, seq {finished} "
        "AND queue = q.name ORDER BY finished_at DESC, seq DESC OFFSET %(keep)s LIMIT 1) e "
        f"WHERE q.name IS NOT NULL), d AS (DELETE FROM {s}.jobs j USING edges "
        f"WHERE j.state = '{state}' AND j.queue = edges.name "
        f"AND (j.finished_at, j.seq) <= (edges.finished_at, edges.seq){not_own} "
        f"RETURNING j.queue, j.state), {tally(s, 'd', 'r.state', 'NULL')} "
        "SELECT count(*) FROM d"
    )
