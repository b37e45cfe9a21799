-- ARGV[4] id, [5] token, [6] progress JSON ('' = none), [7] event data JSON, [8] log lines
-- (see add_logs), [9] max_log_lines, [10] max_log_bytes.
local id = ARGV[4]
local jk = QK .. 'j:' .. id
local f = redis.call('HMGET', jk, 's', 'tk', 't', 'q')
if f[1] ~= 'active' or f[2] ~= ARGV[5] then return 0 end
add_logs(jk, ARGV[8], ARGV[9], ARGV[10])
if ARGV[6] ~= '' then
  redis.call('HSET', jk, 'pg', ARGV[6])
  event('job.progress', id, f[3], f[4], ARGV[7])
end
return 1
