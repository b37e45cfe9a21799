-- ARGV[4] state ('' = any), [5] task ('' = any), [6] offset, [7] limit, [8] a job id
-- ('' = none): only the jobs listed after it, [9] its creation time (used when the job is
-- not in this queue's index). Jobs newest first (created, then id), as {id, public state,
-- fields}.
local state, task = ARGV[4], ARGV[5]
local offset, limit = tonumber(ARGV[6]), tonumber(ARGV[7])
local index = QK .. 'all'
if state == 'queued' or state == 'scheduled' then
  index = QK .. 'i:queued'
elseif state ~= '' then
  index = QK .. 'i:' .. state
end
-- Where the listing starts: the rank after the anchor (ties on time go by id, descending).
local first = 0
local anchor = ARGV[8]
if anchor ~= '' then
  local rank = redis.call('ZREVRANK', index, anchor)
  if rank then
    first = rank + 1
  else
    local at = redis.call('ZSCORE', QK .. 'all', anchor) or ARGV[9]
    first = redis.call('ZCOUNT', index, '(' .. at, '+inf')
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', index, at, at)) do
      if id > anchor then first = first + 1 end
    end
  end
end
local out = {}
local derived = state == 'queued' or state == 'scheduled'
if not derived and task == '' then
  for _, id in ipairs(redis.call('ZREVRANGE', index, first + offset, first + offset + limit - 1)) do
    local rec = record(id)
    if rec then out[#out + 1] = rec end
  end
  return out
end
-- Filtered: walk the index newest first, in chunks, skipping `offset` matches.
local skip = offset
local start = first
while #out < limit do
  local ids = redis.call('ZREVRANGE', index, start, start + 199)
  if #ids == 0 then break end
  start = start + #ids
  for _, id in ipairs(ids) do
    local jk = QK .. 'j:' .. id
    local f = redis.call('HMGET', jk, 's', 'r', 't')
    if f[1] and (task == '' or f[3] == task) and (not derived or pstate(f[1], f[2]) == state) then
      if skip > 0 then
        skip = skip - 1
      else
        out[#out + 1] = record(id)
        if #out >= limit then break end
      end
    end
  end
end
return out
