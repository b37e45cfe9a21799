-- ARGV[4] state, [5] delete those finished at or before this time ('' = no cutoff; seconds
-- ago), [6] keep this many newest ('' = no limit). Returns how many were deleted.
local state = ARGV[4]
local fk = QK .. 'f:' .. state
local doomed = {}
if ARGV[5] ~= '' then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', fk, '-inf', fmt(NOW - tonumber(ARGV[5])))) do
    doomed[id] = true
  end
end
if ARGV[6] ~= '' then
  for _, id in ipairs(redis.call('ZREVRANGE', fk, tonumber(ARGV[6]), -1)) do doomed[id] = true end
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
