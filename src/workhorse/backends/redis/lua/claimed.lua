-- Backend.enqueue_claimed on one server: from ARGV[4] one segment of claim_jobs
-- (_prelude.lua), every run's owner '0'. The runs reach other slots than the call's own
-- ({P}): Redis Cluster keeps the client's default instead (backend.py).
return claim_jobs(4, {}, nil)
