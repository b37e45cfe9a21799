-- ARGV[4] queue, ARGV[5] '1' to watch the jobs (their finish is published whole, as
-- fetch.lua's mode 2 does: a caller waits for them next), ARGV[6] K, the number of task
-- parts that follow: K times task priority max_attempts timeout lease replace keep_for
-- hold max_stalls (most calls carry one: the same for a task's jobs, sent once, not per
-- job); then per job: id data delay at dedup, and the ARGV index where its task part
-- starts. Or ARGV[6] 'p' (plain): one task part, then per job only its id and payload
-- (due now, no dedup key: most bulk calls' jobs). The work is enqueue_jobs's
-- (_prelude.lua), shared with claim_jobs; its reply is this call's.
if ARGV[6] == 'p' then return (enqueue_jobs(ARGV[4], ARGV[5] == '1', nil, nil, 16, 2)) end
return (enqueue_jobs(ARGV[4], ARGV[5] == '1', nil, nil, 7 + 9 * tonumber(ARGV[6]), 6))
