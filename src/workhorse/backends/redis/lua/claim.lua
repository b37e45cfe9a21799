-- ARGV[4] worker, ARGV[5] limit, ARGV[6] default lease seconds, ARGV[7] token base,
-- ARGV[8] (a claim behind an idle worker's blocking pop, wait_claim) handover seconds: the
-- worker may not be there to read the reply (stopped, cut off), so its leases last at most
-- that long and are marked untaken ('wk') until its first renew; one that expires so is a
-- handover that never happened, not a stall (reclaim.lua).
-- Returns {jobs, idle}: jobs, per job: id token task data attempts max_attempts timeout
-- lease created stalls; idle, what peek.lua would tell after this claim (paused, due now, seconds
-- until the next scheduled job): the client's next claim and wait act on it instead of
-- asking again (see _idle_hints in waiting.py).
-- The leases' indexes are kept as skiplists once they hold SMALL members (see the
-- prelude's skiplisted(); a worker's concurrency and prefetch keep them under 128), asked
-- on every call: they empty whenever the workers are idle.
if redis.call('EXISTS', QK .. 'paused') == 1 then return {{}, {1, 0, ''}} end
local worker, limit, lease, base = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local handover = tonumber(ARGV[8] or '')
-- Promote the scheduled jobs that are due now (bounded: the rest wait for the next claim).
local due = redis.call('ZRANGEBYSCORE', QK .. 'sched', '-inf', NOWS, 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
  local jk = QK .. 'j:' .. id
  local f = redis.call('HMGET', jk, 'p', 'r', 's')
  redis.call('ZREM', QK .. 'sched', id)
  if f[3] == 'queued' then
    if tonumber(f[1]) and tonumber(f[2]) then
      place(jk, id, tonumber(f[1]), tonumber(f[2]), f[2], redis.call('INCR', QK .. 'seq'))
    else
      quarantine(id, 'missing or malformed field(s) priority or run_at', {})
    end
  end
end
local picked = redis.call('ZRANGE', QK .. 'ready', 0, limit - 1)
local out = {}
if #picked > 0 then
  redis.call('ZREMRANGEBYRANK', QK .. 'ready', 0, #picked - 1)
  local converted = {skiplisted(QK .. 'active', #picked, false),
    skiplisted(QK .. 'i:active', #picked, false)}
  local wq = cjson.encode(worker)
  for i, rk in ipairs(picked) do
    local id = string.sub(rk, 29)
    local jk = QK .. 'j:' .. id
    local f = redis.call('HMGET', jk, 't', 'd', 'm', 'to', 'l', 'c', 'q', 'a', 'sl', 'ev')
    -- A record someone else wrote or damaged is quarantined, never handed out (and a
    -- ready entry whose record is gone is just dropped).
    if f[1] and f[2] and f[7] and tonumber(f[3]) and tonumber(f[6]) and tonumber(f[8])
        and (not f[4] or f[4] == '' or tonumber(f[4]))
        and (not f[5] or f[5] == '' or tonumber(f[5])) then
      local attempts = tonumber(f[8]) + 1
      local span = lease
      if f[5] and f[5] ~= '' then span = tonumber(f[5]) end
      local token = base .. i
      local held = span
      -- The event first: the record's HSET below keeps its id (read with the rest).
      local ev = ev_added(f[10], event('job.started', id, f[1], f[7],
        '{"attempt":' .. attempts .. ',"worker":' .. wq .. '}', nil, true))
      if handover then
        if handover < span then held = handover end
        redis.call('HSET', jk, 's', 'active', 'a', attempts, 'w', worker, 'tk', token,
          'st', NOWS, 'x', fmt(NOW + held), 'wk', '1', 'ev', ev)
        redis.call('HDEL', jk, 'rk')
      else
        redis.call('HSET', jk, 's', 'active', 'a', attempts, 'w', worker, 'tk', token,
          'st', NOWS, 'x', fmt(NOW + span), 'ev', ev)
        redis.call('HDEL', jk, 'rk', 'wk')
      end
      redis.call('ZADD', QK .. 'active', NOW + held, id)
      redis.call('ZREM', QK .. 'i:queued', id)
      redis.call('ZADD', QK .. 'i:active', f[6], id)
      local n = #out
      out[n + 1] = id; out[n + 2] = token; out[n + 3] = f[1]; out[n + 4] = f[2]
      out[n + 5] = attempts; out[n + 6] = f[3]; out[n + 7] = f[4]; out[n + 8] = tostring(span)
      out[n + 9] = f[6]; out[n + 10] = f[9] or '0'
    else
      quarantine(id, malformed({t = f[1], d = f[2], m = f[3], to = f[4], l = f[5], c = f[6],
        q = f[7], a = f[8]}), {})
    end
  end
  if converted[1] then redis.call('ZREM', QK .. 'active', LONG) end
  if converted[2] then redis.call('ZREM', QK .. 'i:active', LONG) end
end
-- Nothing left to take: drop stale wake-up tokens, so idle workers really sleep.
local left = redis.call('ZCARD', QK .. 'ready')
if left == 0 then redis.call('DEL', QK .. 'wake') end
local due, wait = 0, ''
if left > 0 then due = 1 end
local first = redis.call('ZRANGE', QK .. 'sched', 0, 0, 'WITHSCORES')
if first[1] then
  local at = tonumber(first[2])
  if at <= NOW then due = 1 else wait = fmt(at - NOW) end
end
return {out, {0, due, wait}}
