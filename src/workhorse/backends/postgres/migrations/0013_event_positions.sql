-- 0013: readers page the event log by (xid, id), not by id (decisions: "PostgreSQL event
-- reads by (xid, id)"); a cursor is the position xid * 10^19 + id (positions.py).
--
-- The SHARE lock waits for the writers in flight and holds new ones until this commits:
-- the saved cursors are converted against a log with no event in flight.
LOCK TABLE events IN SHARE MODE;

CREATE INDEX events_position_idx ON events (xid, id);
DROP INDEX events_run_idx;
CREATE INDEX events_run_idx ON events (run, xid, id) WHERE run IS NOT NULL;

-- Hook groups' cursors and holds saved as plain ids: a cursor c becomes (the oldest xid of
-- the events past c, c), so none of them is skipped and only events of newer transactions
-- that took ids up to c are read again; a cursor with no event past it becomes the newest
-- event's position (nothing left to read), or 0 in an empty log.
UPDATE kv SET value = coalesce(
    (SELECT min(e.xid)::text::numeric * 10000000000000000000 + kv.value::numeric
     FROM events e WHERE e.id > kv.value::bigint),
    (SELECT e.xid::text::numeric * 10000000000000000000 + e.id
     FROM events e ORDER BY e.xid DESC, e.id DESC LIMIT 1),
    0)::text
WHERE (key LIKE 'hooks:%:cursor:%' OR key LIKE 'hookhold:%')
  AND CASE WHEN value ~ '^[0-9]{1,19}$' THEN value::numeric END
      BETWEEN 1 AND 9223372036854775807;
