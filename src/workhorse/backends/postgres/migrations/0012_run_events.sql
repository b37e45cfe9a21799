-- 0012: a flow run's events read by run (app.flows.events), not by walking the log.
--
-- publish() fills run from an event's data["run"]; job events and events written before
-- this migration have none (the partial index leaves them out).

ALTER TABLE events ADD COLUMN run text;
CREATE INDEX events_run_idx ON events (run, id) WHERE run IS NOT NULL;
