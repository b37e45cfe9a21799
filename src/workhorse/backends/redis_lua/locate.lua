-- ARGV[4] id, whose queue the caller does not know: look in every known queue; ARGV[5]
-- as fetch.lua's mode. Returns {queue, {id, public state, fields} or false} or false.
local id, mode = ARGV[4], ARGV[5]
for _, q in ipairs(redis.call('SMEMBERS', G .. 'queues')) do
  QK = '{' .. P .. ':' .. q .. '}:'
  local rec = record(id)
  if rec then
    local s = rec[2]
    if mode == '0' or s == 'completed' or s == 'failed' or s == 'cancelled' then
      return {q, rec}
    end
    if mode == '2' then redis.call('SADD', QK .. 'watch', id) end
    return {q, false}
  end
end
return false
