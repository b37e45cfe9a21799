-- ARGV[4] queue, ARGV[5] '1' to pause, '0' to resume.
if ARGV[5] == '1' then
  redis.call('SET', QK .. 'paused', '1')
  redis.call('SADD', G .. 'paused', ARGV[4])
else
  redis.call('DEL', QK .. 'paused')
  redis.call('SREM', G .. 'paused', ARGV[4])
  wake(1)
end
return 1
