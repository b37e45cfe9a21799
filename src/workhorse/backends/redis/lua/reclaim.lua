-- Expired leases go back to queued, or to failed when the stall budget is spent (or to
-- cancelled when a cancel was requested). A try whose worker died counts as a stall, not
-- an attempt; a lease handed over and never taken up counts as neither. Returns the ids.
local expired = redis.call('ZRANGEBYSCORE', QK .. 'active', '-inf', NOWS, 'LIMIT', 0, 1000)
local ended = {}
local requeued = 0
for _, id in ipairs(expired) do
  local jk = QK .. 'j:' .. id
  local f = redis.call('HMGET', jk, 'w', 'a', 'sl', 'cx', 't', 'q', 's', 'ms', 'wk')
  if f[7] ~= 'active' then
    redis.call('ZREM', QK .. 'active', id)  -- an index entry without its job: tidy it
  elseif not tonumber(f[2]) or (f[3] and not tonumber(f[3])) or (f[8] and not tonumber(f[8])) then
    quarantine(id, 'missing or malformed field(s) attempts, stalls or max_stalls', {})
  elseif f[9] then
    -- Handed to an idle worker as it woke (claim.lua's handover) and never taken up: it
    -- never ran there, so back to its queue with its attempt given back and no stall.
    local attempts = tonumber(f[2]) - 1
    local err = cjson.encode({type = 'LeaseExpired', traceback = '',
      message = 'worker ' .. (f[1] or '') .. ' was handed the job as it woke but did not ' ..
        'take it up in time (stopped or cut off); the attempt does not count'})
    redis.call('HSET', jk, 'a', attempts, 'e', err)
    redis.call('HDEL', jk, 'wk')
    if f[4] then
      end_job(jk, id, 'active', 'cancelled')
      event('job.cancelled', id, f[5], f[6], '{}')
      ended[#ended + 1] = id
    else
      requeue(jk, id, 'active', NOW, NOWS)
      event('job.retrying', id, f[5], f[6], '{"attempt":' .. attempts ..
        ',"delay":0,"error":' .. err .. '}')
      requeued = requeued + 1
    end
  else
    local w, sl, ms = f[1] or '', (tonumber(f[3]) or 0) + 1, tonumber(f[8]) or 3
    redis.call('HSET', jk, 'a', tonumber(f[2]) - 1, 'sl', sl)
    local err = {type = 'LeaseExpired', traceback = '',
      message = 'worker ' .. w .. ' stopped renewing its lease (stall ' .. sl .. ', max_stalls ' .. ms .. ')'}
    event('job.stalled', id, f[5], f[6], '{"stalls":' .. sl .. ',"worker":' .. cjson.encode(w) .. '}')
    if f[4] then
      redis.call('HSET', jk, 'e', cjson.encode(err))
      end_job(jk, id, 'active', 'cancelled')
      event('job.cancelled', id, f[5], f[6], '{}')
      ended[#ended + 1] = id
    elseif sl > ms then
      err.message = 'killed its worker ' .. sl .. ' times: the lease expired each time (max_stalls ' ..
        ms .. ')'
      local ej = cjson.encode(err)
      redis.call('HSET', jk, 'e', ej)
      end_job(jk, id, 'active', 'failed')
      event('job.failed', id, f[5], f[6], '{"stalls":' .. sl .. ',"error":' .. ej .. '}')
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
