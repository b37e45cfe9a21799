-- Backend.enqueue_claimed_with on one server (a flow run's start): the kv keys, the events,
-- the counters and the claimed jobs in one script, so neither a producer killed while it
-- sends the call nor a reader finds a run's record and live entry without its entry jobs.
-- ARGV[4], [5], [6]: where the events, the counters and the claims start; from ARGV[7] key,
-- value pairs (kv_sets), then events of seven (publish_events), counters of three
-- (add_counters), then one segment of claim_jobs to the end, every run's owner '0'. The
-- jobs' job.queued come after the events in the merged log. The runs reach other slots
-- than the call's own ({P}): Redis Cluster keeps the client's default instead (backend.py).
local events, counters, claims = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
kv_sets(7, events - 1)
local floor = nil  -- no events: no publish's work (its trim of the runs' streams)
if counters > events then floor = publish_events(events, counters - 1) end
add_counters(counters, claims - 1)
return claim_jobs(claims, {}, floor)
