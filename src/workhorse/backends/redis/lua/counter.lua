-- ARGV[4], [5], [6]: a counter's key, n and ttl milliseconds ('' = none), then the same for
-- each further counter, added in order. Returns their new values. The TTL is set only on a
-- counter that has none, so adding does not push its expiry back.
local out = {}
for i = 4, #ARGV, 3 do
  local key = ARGV[i]
  out[#out + 1] = redis.call('INCRBY', key, ARGV[i + 1])
  if ARGV[i + 2] ~= '' and redis.call('PTTL', key) == -1 then
    redis.call('PEXPIRE', key, ARGV[i + 2])
  end
end
return out
