-- ARGV[4] queue, ARGV[5] '1' to watch the jobs (their finish is published whole, as
-- fetch.lua's mode 2 does: a caller waits for them next), ARGV[6] K, the number of task
-- parts that follow: K times task priority max_attempts timeout lease replace keep_for
-- hold max_stalls (most calls carry one: the same for a task's jobs, sent once, not per
-- job); then per job: id data delay at dedup, and the ARGV index where its task part
-- starts.
-- Returns per job 1 (created, queued) or 2 (created, scheduled): the common case, as the
-- client knows the id and queue it sent; otherwise {id, created (1/0), public state,
-- queue, replaced (1/0)}.
-- A dedup key is the queue's own ({P:Q}:dedup): the client lists the queue in {P}:queues
-- before the first call, as that set lives in another slot.
local queue = ARGV[4]
local watch = ARGV[5] == '1'
local FIRST = 7 + 9 * tonumber(ARGV[6])  -- the first job's id
local JOBS = (#ARGV - FIRST + 1) / 6
local out = {}
local created = 0

local function due_time(i)
  if ARGV[i + 3] ~= '' then
    local at = tonumber(ARGV[i + 3])
    return at, fmt(at)
  elseif tonumber(ARGV[i + 2]) > 0 then
    local at = NOW + tonumber(ARGV[i + 2])
    return at, fmt(at)
  end
  return NOW, NOWS
end

local function put(a, b, c, d, e)
  if watch and c ~= 'completed' and c ~= 'failed' and c ~= 'cancelled' then
    redis.call('SADD', QK .. 'watch', a)
  end
  out[#out + 1] = {a, b, c, d, e}
end

-- A new job's record: the fields every job has, then ... (field, value pairs).
local function write(jk, i, p, run_s, ...)
  redis.call('HSET', jk, 't', ARGV[p], 'q', queue, 'd', ARGV[i + 1], 'p', ARGV[p + 1],
    'm', ARGV[p + 2], 'to', ARGV[p + 3], 'l', ARGV[p + 4], 'c', NOWS, 'r', run_s,
    's', 'queued', 'a', 0, 'ms', ARGV[p + 8], ...)
end

local STREAM = QK .. 'events'
-- A call of several jobs trims the event stream once, after its last XADD (three
-- arguments less per job; nobody sees the stream between two of its entries).
local TRIM = JOBS == 1
local NOWUS = string.format('%016d', math.floor(NOW * 1000000 + 0.5))
local ready, indexed = {}, {}
-- The FIFO sequence of this call's jobs: they share one TIME, and no other call sees
-- the same microsecond (one server runs them one after another), so a count from 1
-- orders them without the queue's seq key (a command per call, ~8 % of a one-job call).
local seq = 0
-- Each task part's ready score (-priority), as the string redis.call would make of the
-- number: once per call, not per job.
local scores = {}

-- A call without dedup keys (the common one) puts every id into 'all' first, NX: if each
-- was added, none of its jobs existed (a resent call's did), so no job needs an EXISTS of
-- its own. 'all' lists exactly the ids that have a record: purge and release delete both.
local listed = true
for i = FIRST, #ARGV, 6 do
  if ARGV[i + 4] ~= '' then listed = false; break end
end
local fresh = false
if listed then
  local members, added = {}, 0
  for i = FIRST, #ARGV, 6 do
    members[#members + 1] = NOWS; members[#members + 1] = ARGV[i]
    if #members >= 2000 or i + 6 > #ARGV then  -- unpack() has a stack limit
      added = added + redis.call('ZADD', QK .. 'all', 'NX', unpack(members))
      members = {}
    end
  end
  fresh = added == JOBS
end

local function flush()
  if #ready > 0 then redis.call('ZADD', QK .. 'ready', unpack(ready)); ready = {} end
  if #indexed > 0 then
    if not listed then redis.call('ZADD', QK .. 'all', unpack(indexed)) end
    redis.call('ZADD', QK .. 'i:queued', unpack(indexed))
    indexed = {}
  end
end

for i = FIRST, #ARGV, 6 do
  if #indexed >= 2000 then flush() end  -- unpack() has a stack limit
  local id, dk, p = ARGV[i], ARGV[i + 4], tonumber(ARGV[i + 5])
  local jk = QK .. 'j:' .. id
  local live = false
  if dk ~= '' then live = redis.call('HGET', QK .. 'dedup', dk) end
  if live == id then live = false end  -- our own key: a resent call, answered below
  if live then
    -- The holder may be a job of this very batch whose index entries are still pending:
    -- write them first, or unplace() misses its ready entry and flush() adds it back
    -- beside the new one (a stale entry that claim would hand out again).
    flush()
    local ljk = QK .. 'j:' .. live
    if ARGV[p + 7] == '1' then redis.call('HINCRBY', ljk, 'hd', 1) end  -- a run() caller waits
    local f = redis.call('HMGET', ljk, 's', 'r', 't')
    local replaced = 0
    if ARGV[p + 5] == '1' and f[1] == 'queued' then
      -- Debounce: the newest payload wins and its delay starts over.
      redis.call('HSET', ljk, 'd', ARGV[i + 1], 'p', ARGV[p + 1], 'm', ARGV[p + 2],
        'to', ARGV[p + 3], 'ms', ARGV[p + 8])
      unplace(ljk, live)
      local run_at, run_s = due_time(i)
      requeue(ljk, live, 'queued', run_at, run_s)
      event('job.queued', live, f[3], queue, '{"replaced":true}')
      wake(1)
      replaced = 1
      f = redis.call('HMGET', ljk, 's', 'r')
    end
    put(live, 0, pstate(f[1], f[2]), queue, replaced)
  elseif not fresh and redis.call('EXISTS', jk) == 1 then
    -- The same id again: a client that resent after a dropped reply. Enqueue is idempotent.
    local f = redis.call('HMGET', jk, 's', 'r')
    put(id, 1, pstate(f[1], f[2]), queue, 0)
  else
    -- The common path, kept to few calls per job: every index write is batched below,
    -- and a job without rare options builds no table (its record and event are written
    -- from the arguments as they are).
    local run_at, run_s = NOW, NOWS
    if ARGV[i + 3] ~= '' or ARGV[i + 2] ~= '0.0' then run_at, run_s = due_time(i) end
    seq = seq + 1
    local extra = nil
    if ARGV[p + 6] ~= '' then
      extra = {'kf', ARGV[p + 6]}
      redis.call('SET', QK .. 'ownkeep', '1')  -- purge.lua looks for such jobs from now on
    end
    if ARGV[p + 7] == '1' then
      extra = extra or {}
      extra[#extra + 1] = 'hd'; extra[#extra + 1] = 1
    end
    if dk ~= '' then
      extra = extra or {}
      extra[#extra + 1] = 'k'; extra[#extra + 1] = dk
      redis.call('HSET', QK .. 'dedup', dk, id)
    end
    -- The event first: the record keeps its id ('ev', see event() in _prelude.lua).
    local eid
    if TRIM then
      eid = redis.call('XADD', STREAM, 'MAXLEN', '~', MAXEV, '*', 'e', 'job.queued',
        'j', id, 't', ARGV[p], 'q', queue, 'd', '{}', 'a', NOWS)  -- as event() writes it
    else
      eid = redis.call('XADD', STREAM, '*', 'e', 'job.queued', 'j', id, 't', ARGV[p],
        'q', queue, 'd', '{}', 'a', NOWS)
    end
    if run_at <= NOW then
      -- As place() does, inlined so that the ready index takes one ZADD per batch.
      local us = NOWUS
      if run_at ~= NOW then
        local n = math.floor(run_at * 1000000 + 0.5)
        if n < 0 then n = 0 end
        us = string.format('%016d', n)
      end
      local rk = us .. string.format('%012d', seq) .. id
      local score = scores[p]
      if not score then
        score = tostring(-tonumber(ARGV[p + 1]))
        scores[p] = score
      end
      ready[#ready + 1] = score; ready[#ready + 1] = rk
      if extra then
        extra[#extra + 1] = 'rk'; extra[#extra + 1] = rk
        write(jk, i, p, run_s, 'ev', eid, unpack(extra))
      else
        write(jk, i, p, run_s, 'ev', eid, 'rk', rk)
      end
    else
      redis.call('ZADD', QK .. 'sched', run_s, id)
      if extra then
        write(jk, i, p, run_s, 'ev', eid, unpack(extra))
      else
        write(jk, i, p, run_s, 'ev', eid)
      end
    end
    indexed[#indexed + 1] = NOWS; indexed[#indexed + 1] = id
    created = created + 1
    if watch then redis.call('SADD', QK .. 'watch', id) end
    if run_at > NOW then out[#out + 1] = 2 else out[#out + 1] = 1 end
  end
end
flush()
if not TRIM and created > 0 then redis.call('XTRIM', STREAM, 'MAXLEN', '~', MAXEV) end
if created > 0 then wake(created) end
return out
