-- ARGV[4] id, whose queue the caller does not know: look in every known queue.
-- Returns {queue, {id, public state, fields}} or false.
local id = ARGV[4]
local p = string.sub(G, 2, -3)
for _, q in ipairs(redis.call('SMEMBERS', G .. 'queues')) do
  QK = '{' .. p .. ':' .. q .. '}:'
  local rec = record(id)
  if rec then return {q, rec} end
end
return false
