-- ARGV[4] id, [5] token, [6] progress JSON ('' = none), [7] event data JSON, [8] logs JSON,
-- [9] their sizes, [10] lines dropped unsent, [11] max_log_lines, [12] max_log_bytes.
local id = ARGV[4]
local jk = QK .. 'j:' .. id
local f = redis.call('HMGET', jk, 's', 'tk', 't', 'q')
if f[1] ~= 'active' or f[2] ~= ARGV[5] then return 0 end
add_logs(jk, ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12])
if ARGV[6] ~= '' then
  redis.call('HSET', jk, 'pg', ARGV[6])
  event('job.progress', id, f[3], f[4], ARGV[7])
end
return 1
