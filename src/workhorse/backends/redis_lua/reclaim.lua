-- Expired leases go back to queued, or to failed when attempts are spent (or to cancelled
-- when a cancel was requested). Returns the ids.
local expired = redis.call('ZRANGEBYSCORE', QK .. 'active', '-inf', NOWS, 'LIMIT', 0, 1000)
local ended = {}
local requeued = 0
for _, id in ipairs(expired) do
  local jk = QK .. 'j:' .. id
  local f = redis.call('HMGET', jk, 'w', 'a', 'm', 'cx', 't', 'q', 's')
  if f[7] ~= 'active' then
    redis.call('ZREM', QK .. 'active', id)  -- an index entry without its job: tidy it
  elseif not tonumber(f[2]) or not tonumber(f[3]) then
    quarantine(id, 'missing or malformed field(s) attempts or max_attempts', {})
  else
    local w, a, m = f[1] or '', tonumber(f[2]), tonumber(f[3])
    local err = {type = 'LeaseExpired', traceback = '',
      message = 'worker ' .. w .. ' stopped renewing its lease (attempt ' .. a .. ' of ' .. m .. ')'}
    event('job.stalled', id, f[5], f[6], '{"attempt":' .. a .. ',"worker":' .. cjson.encode(w) .. '}')
    if f[4] then
      redis.call('HSET', jk, 'e', cjson.encode(err))
      end_job(jk, id, 'active', 'cancelled')
      event('job.cancelled', id, f[5], f[6], '{}')
      ended[#ended + 1] = id
    elseif a >= m then
      err.message = 'killed its worker ' .. a .. ' times: the lease expired on each of ' .. m ..
        ' attempts'
      local ej = cjson.encode(err)
      redis.call('HSET', jk, 'e', ej)
      end_job(jk, id, 'active', 'failed')
      event('job.failed', id, f[5], f[6], '{"attempt":' .. a .. ',"error":' .. ej .. '}')
      ended[#ended + 1] = id
    else
      redis.call('HSET', jk, 'e', cjson.encode(err))
      requeue(jk, id, 'active', NOW, NOWS)
      requeued = requeued + 1
    end
  end
end
if requeued > 0 then wake(requeued) end
notify_finished(ended)
return expired
