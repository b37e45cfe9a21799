-- ARGV[4] max_log_lines, [5] max_log_bytes, [6] where the follow-ups start ('' for none),
-- then per item: id token kind result error delay refund logs (see add_logs). kind:
-- completed | failed | retry | cancelled. Returns per item 1 (applied) or 0 (refused: the
-- lease is not the caller's). Follow-ups (one server only; Capabilities.finish_followups):
-- from ARGV[6], a segment of claim_jobs whose runs' owners are item numbers (1 for the
-- first item), written only for the items this call completed, their job.queued after
-- every event of this call; the reply is then {per item 1 or 0, claim_jobs's answers}.
local out = {}
local ended = {}
local requeued = 0
local followups = tonumber(ARGV[6])
local owners = {}  -- item number -> true once completed here
local floor = nil  -- this call's last entry id
for i = 7, (followups or #ARGV + 1) - 1, 8 do
  local id, kind, err = ARGV[i], ARGV[i + 2], ARGV[i + 4]
  local jk = QK .. 'j:' .. id
  local f = redis.call('HMGET', jk, 's', 'tk', 'a', 't', 'q')
  if f[1] ~= 'active' or f[2] ~= ARGV[i + 1] then
    out[#out + 1] = 0
  else
    out[#out + 1] = 1
    add_logs(jk, ARGV[i + 7], ARGV[4], ARGV[5])
    local attempts = tonumber(f[3])
    local ejson = err
    if err == '' then
      redis.call('HDEL', jk, 'e'); ejson = 'null'
    else
      redis.call('HSET', jk, 'e', err)
    end
    if kind == 'completed' then
      if ARGV[i + 3] == '' then redis.call('HDEL', jk, 'res') else redis.call('HSET', jk, 'res', ARGV[i + 3]) end
      end_job(jk, id, 'active', 'completed')
      floor = event('job.completed', id, f[4], f[5], '{"attempt":' .. attempts .. '}')
      ended[#ended + 1] = id
      owners[tostring(#out)] = true
    elseif kind == 'retry' then
      if ARGV[i + 6] == '1' then
        attempts = attempts - 1
        redis.call('HSET', jk, 'a', attempts)
      end
      local delay = tonumber(ARGV[i + 5])
      local run_at, run_s = NOW, NOWS
      if delay > 0 then run_at = NOW + delay; run_s = fmt(run_at) end
      requeue(jk, id, 'active', run_at, run_s)
      floor = event('job.retrying', id, f[4], f[5], '{"attempt":' .. attempts .. ',"delay":' ..
        ARGV[i + 5] .. ',"error":' .. ejson .. '}')
      requeued = requeued + 1
    elseif kind == 'failed' then
      end_job(jk, id, 'active', 'failed')
      floor = event('job.failed', id, f[4], f[5], '{"attempt":' .. attempts .. ',"error":' .. ejson .. '}')
      ended[#ended + 1] = id
    else
      end_job(jk, id, 'active', 'cancelled')
      floor = event('job.cancelled', id, f[4], f[5], '{}')
      ended[#ended + 1] = id
    end
  end
end
if requeued > 0 then wake(requeued) end
notify_finished(ended)
if not followups then return out end
return {out, claim_jobs(followups, owners, floor)}
