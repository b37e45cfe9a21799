"""The Redis backend: ``redis://[:password@]host:port/db?prefix=workhorse`` (or ``rediss://``),
and Redis Cluster: ``redis+cluster://host:port,host:port/?prefix=workhorse`` (see
cluster.py).

Every state change is one Lua script (``lua/``, see scripts.py), loaded once and called by SHA, so a
job is never left half-moved by a crash between two commands, and the server's ``TIME``
decides due times and lease expiry. Idle workers block on a per-queue wake-up list;
callers waiting for results block on a pub/sub channel.

Keys (``P`` is the prefix, ``Q`` a queue; ``{...}`` is the hash tag that picks the slot)::

    slot {P:Q}, one per queue
      {P:Q}:j:<id>          hash   the job's record (short field names, see records.py)
      {P:Q}:ready           zset   due jobs; score -priority, member due-time|seq|id
      {P:Q}:sched           zset   jobs due later; score due time
      {P:Q}:active          zset   leased jobs; score lease expiry (reclaim scans it)
      {P:Q}:i:<state>       zset   ids by creation time per state (query, counts)
      {P:Q}:f:<state>       zset   finished ids by finish time (retention, purge)
      {P:Q}:all             zset   every id by creation time (query)
      {P:Q}:seq             string FIFO sequence of requeued and promoted jobs
      {P:Q}:wake            list   wake-up tokens for blocked workers (at most 32)
      {P:Q}:paused          string present while the queue is paused
      {P:Q}:ownkeep         string present once a job of the queue had its own keep_for
      {P:Q}:dedup           hash   dedup key -> id of the live job holding it (per queue)
      {P:Q}:watch           set    ids whose finish a caller waits for
      {P:Q}:events          stream the queue's job events, capped (MAXLEN ~)
      {P:Q}:call:<id>       string a state-changing call's mark (and reply), 60 s (ONCE)
    slot {P}, shared
      {P}:events            stream events with no queue (publish()), capped (MAXLEN ~)
      {P}:queues            set    queues ever used (written by the client, not a script)
      {P}:epoch             string a random mark: its loss means the server lost its data
      {P}:kv:<key>          string set_if_absent;      {P}:n:<key>  string counters
      {P}:kvidx             zset   lasting kv keys, for kv_scan
      {P}:workers           hash   worker id -> record; {P}:workers:exp zset  beat expiry
      {P}:call:<id>         string as {P:Q}:call:<id>, for calls with no queue
    channel {P}:finished    records of watched jobs that just finished (classic PUBLISH)

Every script call touches the keys of one slot and names one of them in KEYS[1], so a
cluster client can route it and a cluster node can run it. The event log is the streams
merged: an entry id <ms>-<seq> is the cursor ms * 1000000 + seq, and events() reads only
below the server's current millisecond, so a cursor never passes an event still to come
(docs/decisions.md, "Redis: one slot per call"). A key prefix lets several apps share a
server.

Modules: ``wire`` (the RESP connection), ``cluster`` (Redis Cluster through redis-py,
imported for a cluster URL only),
``scripts`` (the Lua files), ``records`` (job hashes to Jobs, salvage), ``core`` (options,
connections, script calls), ``waiting`` (blocked workers, result waiters), ``backend``
(the contract methods).
"""

from workhorse.backends.redis.backend import RedisBackend
from workhorse.backends.redis.wire import NoScript, OutOfMemory, ReplyError

__all__ = ["NoScript", "OutOfMemory", "RedisBackend", "ReplyError"]
