-- ARGV[4] state ('' = any), [5] task ('' = any), [6] offset, [7] limit. Jobs newest first
-- (created, then id), as {id, public state, fields}.
local state, task = ARGV[4], ARGV[5]
local offset, limit = tonumber(ARGV[6]), tonumber(ARGV[7])
local index = QK .. 'all'
if state == 'queued' or state == 'scheduled' then
  index = QK .. 'i:queued'
elseif state ~= '' then
  index = QK .. 'i:' .. state
end
local out = {}
local derived = state == 'queued' or state == 'scheduled'
if not derived and task == '' then
  for _, id in ipairs(redis.call('ZREVRANGE', index, offset, offset + limit - 1)) do
    local rec = record(id)
    if rec then out[#out + 1] = rec end
  end
  return out
end
-- Filtered: walk the index newest first, in chunks, skipping `offset` matches.
local skip = offset
local start = 0
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
