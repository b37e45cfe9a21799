-- The key-value store's read by prefix (ARGV[4]): key, value, key, value ... With ARGV[5]
-- (absent or '': all) only the first that many keys in byte order. The index entries of
-- keys that expired are removed as it meets them, and the next keys take their places:
-- its only write, a delete, which frees memory, so it runs at maxmemory ('allow-oom',
-- scripts.FLAGS).
local prefix = ARGV[4]
local limit = tonumber(ARGV[5] or '')
local idx = G .. 'kvidx'
local out = {}
local from, upto = '[' .. prefix, '(' .. prefix .. '\255'
while true do
  local want = limit and limit - #out / 2
  local ks
  if want then
    ks = redis.call('ZRANGEBYLEX', idx, from, upto, 'LIMIT', 0, want)
  else
    ks = redis.call('ZRANGEBYLEX', idx, from, upto)
  end
  for _, k in ipairs(ks) do
    local v = redis.call('GET', G .. 'kv:' .. k)
    if v then
      out[#out + 1] = k; out[#out + 1] = v
    else
      redis.call('ZREM', idx, k)
    end
  end
  if not want or #ks < want or #out / 2 >= limit then break end
  from = '(' .. ks[#ks]
end
return out
