-- The key-value store's read by prefix (ARGV[4]): key, value, key, value ... in byte
-- order. A page: ARGV[5] at most that many keys (absent or '': all), ARGV[6] '1' highest
-- first, ARGV[7] the low and ARGV[8] the high end of the range in ZRANGEBYLEX's terms
-- ('' or absent: the prefix's). The index entries of keys that expired are removed as it
-- meets them, and the next keys take their places: its only write, a delete, which frees
-- memory, so it runs at maxmemory ('allow-oom', scripts.FLAGS).
local prefix = ARGV[4]
local limit = tonumber(ARGV[5] or '')
local reverse = ARGV[6] == '1'
local idx = G .. 'kvidx'
local out = {}
local lo, hi = '[' .. prefix, '(' .. prefix .. '\255'
if ARGV[7] and ARGV[7] ~= '' then lo = ARGV[7] end
if ARGV[8] and ARGV[8] ~= '' then hi = ARGV[8] end
while true do
  local want = limit and limit - #out / 2
  local ks
  if reverse then
    ks = want and redis.call('ZREVRANGEBYLEX', idx, hi, lo, 'LIMIT', 0, want)
      or redis.call('ZREVRANGEBYLEX', idx, hi, lo)
  else
    ks = want and redis.call('ZRANGEBYLEX', idx, lo, hi, 'LIMIT', 0, want)
      or redis.call('ZRANGEBYLEX', idx, lo, hi)
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
  if reverse then hi = '(' .. ks[#ks] else lo = '(' .. ks[#ks] end
end
return out
