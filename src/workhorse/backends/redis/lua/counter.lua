-- ARGV[4] key, [5] n, [6] ttl milliseconds ('' = none). The TTL is set only on a counter
-- that has none, so adding does not push its expiry back.
local v = redis.call('INCRBY', ARGV[4], ARGV[5])
if ARGV[6] ~= '' and redis.call('PTTL', ARGV[4]) == -1 then
  redis.call('PEXPIRE', ARGV[4], ARGV[6])
end
return v
