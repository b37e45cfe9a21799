-- ARGV[4] state, [5] delete those finished at or before this time ('' = no cutoff; seconds
-- ago), [6] keep this many of the queue's newest ('' = no limit), [7] '1' for the retention
-- sweep: a job with its own keep_for ('kf') and no run() caller holding it ('hd') is deleted
-- once keep_for has passed since it finished, and [5] / [6] never delete it (it still counts
-- toward [6]). Returns how many were deleted.
local state = ARGV[4]
local fk = QK .. 'f:' .. state
local doomed, own = {}, {}
if ARGV[7] == '1' and redis.call('EXISTS', QK .. 'ownkeep') == 1 then
  -- Every finished job of the state is looked at, but only in a queue that has ever had
  -- a job with its own keep_for (a queue without one costs the sweep nothing here).
  local all = redis.call('ZRANGE', fk, 0, -1, 'WITHSCORES')
  for i = 1, #all, 2 do
    local id = all[i]
    local f = redis.call('HMGET', QK .. 'j:' .. id, 'kf', 'hd')
    if f[1] and (not f[2] or tonumber(f[2]) == 0) then
      own[id] = true
      if tonumber(all[i + 1]) + tonumber(f[1]) <= NOW then doomed[id] = true end
    end
  end
end
if ARGV[5] ~= '' then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', fk, '-inf', fmt(NOW - tonumber(ARGV[5])))) do
    if not own[id] then doomed[id] = true end
  end
end
if ARGV[6] ~= '' then
  for _, id in ipairs(redis.call('ZREVRANGE', fk, tonumber(ARGV[6]), -1)) do
    if not own[id] then doomed[id] = true end
  end
end
local n = 0
for id, _ in pairs(doomed) do
  redis.call('DEL', QK .. 'j:' .. id)
  redis.call('ZREM', fk, id)
  redis.call('ZREM', QK .. 'i:' .. state, id)
  redis.call('ZREM', QK .. 'all', id)
  n = n + 1
end
return n
