-- {queued, scheduled, active, completed, failed, cancelled} for one queue.
local waiting = redis.call('ZCARD', QK .. 'i:queued')
local later = redis.call('ZCOUNT', QK .. 'sched', '(' .. NOWS, '+inf')
return {waiting - later, later, redis.call('ZCARD', QK .. 'i:active'),
  redis.call('ZCARD', QK .. 'i:completed'), redis.call('ZCARD', QK .. 'i:failed'),
  redis.call('ZCARD', QK .. 'i:cancelled')}
