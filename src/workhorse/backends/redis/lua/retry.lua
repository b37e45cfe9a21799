-- ARGV[4] id. A failed or cancelled job goes back to its queue with fresh attempts, unless
-- a newer live job holds its dedup key. Returns 1 or 0.
local id = ARGV[4]
local jk = QK .. 'j:' .. id
local f = redis.call('HMGET', jk, 's', 'k', 'q', 't')
if f[1] ~= 'failed' and f[1] ~= 'cancelled' then return 0 end
if f[2] then
  if redis.call('HEXISTS', QK .. 'dedup', f[2]) == 1 then return 0 end
  redis.call('HSET', QK .. 'dedup', f[2], id)
end
redis.call('HSET', jk, 'a', 0, 'sl', 0)
redis.call('HDEL', jk, 'f', 'e', 'res')
requeue(jk, id, f[1], NOW, NOWS)
event('job.queued', id, f[4], f[3], '{"retried":true}')
wake(1)
return 1
