-- ARGV[4] id. A queued job is cancelled at once; an active one is flagged (its worker
-- learns it at the next renew). Returns the public state after, or false when unknown.
local id = ARGV[4]
local jk = QK .. 'j:' .. id
local f = redis.call('HMGET', jk, 's', 'r', 'rk', 't', 'q')
if not f[1] then return false end
if f[1] == 'queued' then
  unplace(jk, id)
  end_job(jk, id, 'queued', 'cancelled')
  event('job.cancelled', id, f[4], f[5], '{}')
  notify_finished({id})
  return 'cancelled'
elseif f[1] == 'active' then
  redis.call('HSET', jk, 'cx', '1')
end
return pstate(f[1], f[2])
