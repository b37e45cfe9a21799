-- The key-value store behind schedules and limits. ARGV[4] op: set | sets | setnx | delete |
-- extend | scan.
-- Keys set without a TTL, or through 'set', are listed in an index for scan (pruned there).
local op, key = ARGV[4], ARGV[5]
local idx = G .. 'kvidx'
local kk = G .. 'kv:' .. key
if op == 'set' then
  -- ARGV[6] value, [7] ttl ms ('' = none)
  if ARGV[7] ~= '' then
    redis.call('SET', kk, ARGV[6], 'PX', ARGV[7])
  else
    redis.call('SET', kk, ARGV[6])
  end
  redis.call('ZADD', idx, 0, key)
  return 1
elseif op == 'sets' then
  -- key, value pairs from ARGV[5], each set without a ttl (kv_sets)
  kv_sets(5, #ARGV)
  return 1
elseif op == 'setnx' then
  -- ARGV[6] value, [7] ttl ms ('' = none: a lasting key, listed for scan), [8] a key
  -- whose presence forbids the set ('' = none)
  if ARGV[8] and ARGV[8] ~= '' and kv_live(ARGV[8]) then return 0 end
  if kv_setnx(key, ARGV[6], ARGV[7]) then return 1 end
  return 0
elseif op == 'delete' then
  -- ARGV[6] '1' to delete only while the key holds ARGV[7]
  local cur = redis.call('GET', kk)
  if not cur or (ARGV[6] == '1' and cur ~= ARGV[7]) then return 0 end
  redis.call('DEL', kk)
  redis.call('ZREM', idx, key)
  return 1
elseif op == 'extend' then
  -- ARGV[5] ttl ms, then key, value pairs: each key expires ttl from now while it holds its
  -- value (a limit slot renewed by its owner). Returns a 1 or 0 per pair.
  local out = {}
  for i = 6, #ARGV, 2 do
    local k = G .. 'kv:' .. ARGV[i]
    if redis.call('GET', k) == ARGV[i + 1] then
      redis.call('PEXPIRE', k, ARGV[5])
      out[#out + 1] = 1
    else
      out[#out + 1] = 0
    end
  end
  return out
end
-- scan: ARGV[5] prefix; a page: [6] at most that many keys, [7] '1' highest first, [8] the
-- low end and [9] the high end of the range in ZRANGEBYLEX's terms ('' = the prefix's).
-- Returns key, value, key, value ...
local out = {}
local lo, hi = '[' .. key, '(' .. key .. '\255'
if not ARGV[6] then
  for _, k in ipairs(redis.call('ZRANGEBYLEX', idx, lo, hi)) do
    local v = redis.call('GET', G .. 'kv:' .. k)
    if v then
      out[#out + 1] = k; out[#out + 1] = v
    else
      redis.call('ZREM', idx, k)
    end
  end
  return out
end
local limit, reverse = tonumber(ARGV[6]), ARGV[7] == '1'
if ARGV[8] ~= '' then lo = ARGV[8] end
if ARGV[9] ~= '' then hi = ARGV[9] end
-- Expired keys found are pruned and read past, until the page is full or the range ends.
while true do
  local ks
  if reverse then
    ks = redis.call('ZREVRANGEBYLEX', idx, hi, lo, 'LIMIT', 0, limit)
  else
    ks = redis.call('ZRANGEBYLEX', idx, lo, hi, 'LIMIT', 0, limit)
  end
  for _, k in ipairs(ks) do
    local v = redis.call('GET', G .. 'kv:' .. k)
    if v then
      out[#out + 1] = k; out[#out + 1] = v
      if #out >= 2 * limit then return out end
    else
      redis.call('ZREM', idx, k)
    end
  end
  if #ks < limit then return out end
  if reverse then hi = '(' .. ks[#ks] else lo = '(' .. ks[#ks] end
end
