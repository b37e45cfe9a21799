-- The key-value store's read by prefix (ARGV[4]): key, value, key, value ... The index
-- entries of keys that expired are removed as it meets them: its only write, a delete,
-- which frees memory, so it runs at maxmemory ('allow-oom', scripts.FLAGS).
local prefix = ARGV[4]
local idx = G .. 'kvidx'
local out = {}
for _, k in ipairs(redis.call('ZRANGEBYLEX', idx, '[' .. prefix, '(' .. prefix .. '\255')) do
  local v = redis.call('GET', G .. 'kv:' .. k)
  if v then
    out[#out + 1] = k; out[#out + 1] = v
  else
    redis.call('ZREM', idx, k)
  end
end
return out
