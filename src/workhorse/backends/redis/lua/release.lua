-- ARGV[4] a job id. A run() caller that held it has its result: one hold less. A finished
-- job left without holds whose own keep_for has passed is deleted, as purge deletes.
-- Returns 1 if it was deleted.
local id = ARGV[4]
local jk = QK .. 'j:' .. id
local f = redis.call('HMGET', jk, 's', 'hd', 'kf', 'f')
if not f[1] then return 0 end
local left = (tonumber(f[2]) or 0) - 1
if left > 0 then
  redis.call('HSET', jk, 'hd', left)
  return 0
end
redis.call('HDEL', jk, 'hd')
local state = f[1]
if not (f[3] and f[4]) or not (state == 'completed' or state == 'failed' or state == 'cancelled') then
  return 0
end
if tonumber(f[4]) + tonumber(f[3]) > NOW then return 0 end
redis.call('DEL', jk)
redis.call('ZREM', QK .. 'f:' .. state, id)
redis.call('ZREM', QK .. 'i:' .. state, id)
redis.call('ZREM', QK .. 'all', id)
return 1
