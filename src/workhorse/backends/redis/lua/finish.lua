-- ARGV[4] max_log_lines, [5] max_log_bytes, [6] where the follow-ups start ('' for none),
-- [7] where the steps' events start ('' for none), [8] where the runs' ends start ('' for
-- none), then from ARGV[9] per item: id token kind result error delay refund logs (see
-- add_logs). kind: completed | failed | retry | cancelled. Returns per item 1 (applied) or
-- 0 (refused: the lease is not the caller's); an applied item with a run's end answers
-- 1 + 2 (it set the end marker) + 4 (it deleted the live entry and logged the event).
-- Follow-ups (one server only; Capabilities.finish_followups): from ARGV[6], a segment of
-- claim_jobs whose runs' owners are item numbers (1 for the first item), written only for
-- the items this call completed, their job.queued after every event of this call; the reply
-- is then {per item 1 or 0, claim_jobs's answers}.
-- Steps' events (one server only; Capabilities.finish_events): from ARGV[7] up to the
-- follow-ups, per item that has some: its number, n, and n events of seven (type job task
-- queue data at run, as publish.lua takes them), published as publish.lua does (into
-- {P}:events and the run's stream) before that item's own event, only if it is applied.
-- Runs' ends (one server only; Capabilities.finish_ends): from ARGV[8] up to the
-- follow-ups, per item that has one: its number, the end key, its mark, the live key,
-- the flow's name, the run's retention entry ('' for none) and one event of seven,
-- written only for the items this call completed, after every event of the items: the
-- mark set unless present; if set, the entry set to the mark, the live key deleted while
-- it holds the name and, if deleted, the event published.
local out = {}
local ended = {}
local requeued = 0
local followups = tonumber(ARGV[6])
local stepped = tonumber(ARGV[7])
local ending = tonumber(ARGV[8])
local owners = {}  -- item number -> true once completed here
local floor = nil  -- this call's last entry id
local steps = nil  -- item number -> the ARGV index of its first event, and how many
local revs = {}  -- the runs whose events this call wrote (rev_seen)
if stepped then
  steps = {}
  local e, last = stepped, (ending or followups or #ARGV + 1) - 1
  while e <= last do
    local n = tonumber(ARGV[e + 1])
    steps[ARGV[e]] = {e + 2, n}
    e = e + 2 + 7 * n
  end
end

-- An item's steps' events into {P}:events (and each run's stream, as publish.lua), after
-- the job's newest event (its job.started: ev, the record's 'ev'); returns the last one's
-- entry id, which the item's own event comes after.
local function published(ev, at, n)
  -- Anchored: '(%S+)$' alone is tried from every position (Lua 5.1 recurses per character).
  local eid = ev and (string.match(ev, '^.* (%S+)$') or ev)
  for k = at, at + 7 * (n - 1), 7 do
    local when = ARGV[k + 5]
    if when == '' then when = NOWS end
    local fields = {'e', ARGV[k], 'j', ARGV[k + 1], 't', ARGV[k + 2], 'q', ARGV[k + 3],
      'd', ARGV[k + 4], 'a', when}
    if eid then
      eid = xadd_after(G .. 'events', eid, unpack(fields))
    else
      eid = redis.call('XADD', G .. 'events', 'MAXLEN', '~', MAXEV, '*', unpack(fields))
    end
    local run = ARGV[k + 6]
    if run ~= '' then
      redis.call('XADD', G .. 'rev:' .. run, 'MAXLEN', '~', MAXEV, eid, unpack(fields))
      rev_seen(revs, run, eid)
    end
  end
  return eid
end

for i = 9, (stepped or ending or followups or #ARGV + 1) - 1, 8 do
  local id, kind, err = ARGV[i], ARGV[i + 2], ARGV[i + 4]
  local jk = QK .. 'j:' .. id
  -- 'ev', 'c' and 'k' read here, for the end's one HSET and HDEL (end_job's sets, dels).
  local f = redis.call('HMGET', jk, 's', 'tk', 'a', 't', 'q', 'ev', 'c', 'k')
  if f[1] ~= 'active' or f[2] ~= ARGV[i + 1] then
    out[#out + 1] = 0
  else
    out[#out + 1] = 1
    local after = nil  -- its steps' last event, which its own event comes after
    if steps then
      local own = steps[tostring(#out)]
      if own then after = published(f[6], own[1], own[2]) end
    end
    add_logs(jk, ARGV[i + 7], ARGV[4], ARGV[5])
    local attempts = tonumber(f[3])
    local ejson = err
    if err == '' then ejson = 'null' end
    if kind == 'retry' then
      if err == '' then redis.call('HDEL', jk, 'e') else redis.call('HSET', jk, 'e', err) end
      if ARGV[i + 6] == '1' then
        attempts = attempts - 1
        redis.call('HSET', jk, 'a', attempts)
      end
      local delay = tonumber(ARGV[i + 5])
      local run_at, run_s = NOW, NOWS
      if delay > 0 then run_at = NOW + delay; run_s = fmt(run_at) end
      requeue(jk, id, 'active', run_at, run_s)
      floor = event('job.retrying', id, f[4], f[5], '{"attempt":' .. attempts .. ',"delay":' ..
        ARGV[i + 5] .. ',"error":' .. ejson .. '}', nil, nil, after)
      requeued = requeued + 1
    else
      local state, data = 'cancelled', '{}'
      if kind == 'completed' then
        state, data = kind, '{"attempt":' .. attempts .. '}'
      elseif kind == 'failed' then
        state, data = kind, '{"attempt":' .. attempts .. ',"error":' .. ejson .. '}'
      end
      -- The event first: the record's 'ev' keeps its id, set with the end's other fields.
      floor = event('job.' .. state, id, f[4], f[5], data, nil, true, after)
      local sets, dels = {'ev', ev_added(f[6], floor)}, {}
      if err == '' then
        dels[1] = 'e'
      else
        sets[3] = 'e'; sets[4] = err
      end
      if kind == 'completed' then
        if ARGV[i + 3] == '' then
          dels[#dels + 1] = 'res'
        else
          sets[#sets + 1] = 'res'; sets[#sets + 1] = ARGV[i + 3]
        end
        owners[tostring(#out)] = true
      end
      end_job(jk, id, 'active', state, f[7], f[8], sets, dels)
      ended[#ended + 1] = id
    end
  end
end
if ending then
  for e = ending, (followups or #ARGV + 1) - 1, 13 do
    local n = ARGV[e]
    if owners[n] then
      local code = 1
      if kv_setnx(ARGV[e + 1], ARGV[e + 2], '') then
        code = 3
        if ARGV[e + 5] ~= '' then
          redis.call('SET', G .. 'kv:' .. ARGV[e + 5], ARGV[e + 2])
          redis.call('ZADD', G .. 'kvidx', 0, ARGV[e + 5])
        end
        local lk = G .. 'kv:' .. ARGV[e + 3]
        if redis.call('GET', lk) == ARGV[e + 4] then  -- kv.lua's delete, inline
          redis.call('DEL', lk)
          redis.call('ZREM', G .. 'kvidx', ARGV[e + 3])
          published(floor, e + 6, 1)
          code = 7
        end
      end
      out[tonumber(n)] = code
    end
  end
end
if #revs > 0 then scored(revs) end
if requeued > 0 then wake(requeued) end
notify_finished(ended)
if not followups then return out end
return {out, claim_jobs(followups, owners, floor)}
