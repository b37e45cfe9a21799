-- ARGV[4] '1' to pause, '0' to resume.
if ARGV[4] == '1' then
  redis.call('SET', QK .. 'paused', '1')
else
  redis.call('DEL', QK .. 'paused')
  wake(1)
end
return 1
