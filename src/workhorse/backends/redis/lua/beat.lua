-- ARGV[4] worker id, [5] record JSON, [6] ttl seconds. Returns the server's now.
redis.call('HSET', G .. 'workers', ARGV[4], ARGV[5])
redis.call('ZADD', G .. 'workers:exp', fmt(NOW + tonumber(ARGV[6])), ARGV[4])
return NOWS
