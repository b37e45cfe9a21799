-- For wait_for_jobs: {paused (0/1), due now (0/1), seconds until the next scheduled job
-- ('' when none)}.
local paused = redis.call('EXISTS', QK .. 'paused')
local due = 0
local wait = ''
if redis.call('ZCARD', QK .. 'ready') > 0 then due = 1 end
local first = redis.call('ZRANGE', QK .. 'sched', 0, 0, 'WITHSCORES')
if first[1] then
  local at = tonumber(first[2])
  if at <= NOW then due = 1 else wait = fmt(at - NOW) end
end
return {paused, due, wait}
