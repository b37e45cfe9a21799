-- ARGV[4] id, ARGV[5] a new payload ('' to keep it), ARGV[6] who changed it. A failed or
-- cancelled job goes back to its queue with fresh attempts, unless a newer live job holds
-- its dedup key; its job.queued event keeps the payload replaced. Returns 1 or 0.
local id = ARGV[4]
local jk = QK .. 'j:' .. id
local f = redis.call('HMGET', jk, 's', 'k', 'q', 't', 'd')
if f[1] ~= 'failed' and f[1] ~= 'cancelled' then return 0 end
if f[2] then
  if redis.call('HEXISTS', QK .. 'dedup', f[2]) == 1 then return 0 end
  redis.call('HSET', QK .. 'dedup', f[2], id)
end
redis.call('HSET', jk, 'a', 0, 'sl', 0)
redis.call('HDEL', jk, 'f', 'e', 'res')
local note = '{"retried":true}'
if ARGV[5] ~= '' then
  local old = f[5] or 'null'
  -- The old payload as JSON, or as its text when it does not decode (a quarantined one).
  if not pcall(cjson.decode, old) then old = cjson.encode(old) end
  note = '{"retried":true,"edited":{"by":' .. cjson.encode(ARGV[6]) .. ',"previous":' .. old .. '}}'
  redis.call('HSET', jk, 'd', ARGV[5])
end
requeue(jk, id, f[1], NOW, NOWS)
event('job.queued', id, f[4], f[3], note)
wake(1)
return 1
