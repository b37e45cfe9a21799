-- Drops the workers whose beat expired; returns {now, id, expiry, record, ...} of the rest.
for _, id in ipairs(redis.call('ZRANGEBYSCORE', G .. 'workers:exp', '-inf', NOWS)) do
  redis.call('HDEL', G .. 'workers', id)
  redis.call('ZREM', G .. 'workers:exp', id)
end
local out = {NOWS}
local live = redis.call('ZRANGE', G .. 'workers:exp', 0, -1, 'WITHSCORES')
for i = 1, #live, 2 do
  local rec = redis.call('HGET', G .. 'workers', live[i])
  if rec then
    out[#out + 1] = live[i]; out[#out + 1] = live[i + 1]; out[#out + 1] = rec
  end
end
return out
