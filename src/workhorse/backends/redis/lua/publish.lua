-- Per event: type job task queue data-JSON at ('' = now) run ('' = none).
-- A flow run's event is also added, under the same id, to the run's stream {P}:rev:<run>
-- (what run_events reads); {P}:revs scores each run by its newest event's millisecond, so
-- a run's stream goes once the log has dropped every event of it.
local revs = {}  -- the runs whose events this call wrote (rev_seen)
for i = 4, #ARGV, 7 do
  local at = ARGV[i + 5]
  if at == '' then at = nil end
  local id = event(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], at)
  local run = ARGV[i + 6]
  if run ~= '' then
    redis.call('XADD', G .. 'rev:' .. run, 'MAXLEN', '~', MAXEV, id, 'e', ARGV[i],
      'j', ARGV[i + 1], 't', ARGV[i + 2], 'q', ARGV[i + 3], 'd', ARGV[i + 4], 'a', at or NOWS)
    rev_seen(revs, run, id)
  end
end
if #revs > 0 then scored(revs) end
local oldest = redis.call('XRANGE', G .. 'events', '-', '+', 'COUNT', 1)[1]
if oldest then
  local gone = redis.call('ZRANGEBYSCORE', G .. 'revs', '-inf',
    '(' .. string.match(oldest[1], '^%d+'), 'LIMIT', 0, 16)
  for _, run in ipairs(gone) do
    redis.call('DEL', G .. 'rev:' .. run)
    redis.call('ZREM', G .. 'revs', run)
  end
end
return 1
