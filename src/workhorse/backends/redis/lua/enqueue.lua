-- ARGV[4] queue, ARGV[5] '1' to watch the jobs (their finish is published whole, as
-- fetch.lua's mode 2 does: a caller waits for them next); then per job: id data delay at
-- dedup, then the task's part, the same for most of a task's jobs (the client packs it
-- once): task priority max_attempts timeout lease replace keep_for hold max_stalls.
-- Returns per job: id, created (1/0), public state, queue, replaced (1/0).
-- A dedup key is the queue's own ({P:Q}:dedup): the client lists the queue in {P}:queues
-- before the first call, as that set lives in another slot.
local queue = ARGV[4]
local watch = ARGV[5] == '1'
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
  local n = #out
  out[n + 1] = a; out[n + 2] = b; out[n + 3] = c; out[n + 4] = d; out[n + 5] = e
end

local ready, indexed = {}, {}
local base = nil
local function next_seq()
  -- One INCRBY for the whole batch; seqs only need to grow, gaps are fine.
  if base == nil then
    local n = (#ARGV - 5) / 14
    base = redis.call('INCRBY', QK .. 'seq', n) - n
  end
  base = base + 1
  return base
end

local function flush()
  if #ready > 0 then redis.call('ZADD', QK .. 'ready', unpack(ready)); ready = {} end
  if #indexed > 0 then
    redis.call('ZADD', QK .. 'all', unpack(indexed))
    redis.call('ZADD', QK .. 'i:queued', unpack(indexed))
    indexed = {}
  end
end

for i = 6, #ARGV, 14 do
  if #indexed >= 2000 then flush() end  -- unpack() has a stack limit
  local id, dk = ARGV[i], ARGV[i + 4]
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
    if ARGV[i + 12] == '1' then redis.call('HINCRBY', ljk, 'hd', 1) end  -- a run() caller waits
    local f = redis.call('HMGET', ljk, 's', 'r', 't')
    local replaced = 0
    if ARGV[i + 10] == '1' and f[1] == 'queued' then
      -- Debounce: the newest payload wins and its delay starts over.
      redis.call('HSET', ljk, 'd', ARGV[i + 1], 'p', ARGV[i + 6], 'm', ARGV[i + 7],
        'to', ARGV[i + 8], 'ms', ARGV[i + 13])
      unplace(ljk, live)
      local run_at, run_s = due_time(i)
      requeue(ljk, live, 'queued', run_at, run_s)
      event('job.queued', live, f[3], queue, '{"replaced":true}')
      wake(1)
      replaced = 1
      f = redis.call('HMGET', ljk, 's', 'r')
    end
    put(live, 0, pstate(f[1], f[2]), queue, replaced)
  elseif redis.call('EXISTS', jk) == 1 then
    -- The same id again: a client that resent after a dropped reply. Enqueue is idempotent.
    local f = redis.call('HMGET', jk, 's', 'r')
    put(id, 1, pstate(f[1], f[2]), queue, 0)
  else
    -- The common path, kept to few calls per job: every index write is batched below.
    local run_at, run_s = due_time(i)
    local seq = next_seq()
    local fields = {'t', ARGV[i + 5], 'q', queue, 'd', ARGV[i + 1], 'p', ARGV[i + 6],
      'm', ARGV[i + 7], 'to', ARGV[i + 8], 'l', ARGV[i + 9], 'c', NOWS, 'r', run_s,
      's', 'queued', 'a', 0, 'ms', ARGV[i + 13]}
    if ARGV[i + 11] ~= '' then
      fields[#fields + 1] = 'kf'; fields[#fields + 1] = ARGV[i + 11]
      redis.call('SET', QK .. 'ownkeep', '1')  -- purge.lua looks for such jobs from now on
    end
    if ARGV[i + 12] == '1' then fields[#fields + 1] = 'hd'; fields[#fields + 1] = 1 end
    if dk ~= '' then
      fields[#fields + 1] = 'k'; fields[#fields + 1] = dk
      redis.call('HSET', QK .. 'dedup', dk, id)
    end
    if run_at <= NOW then
      -- As place() does, inlined so that the ready index takes one ZADD per batch.
      local us = math.floor(run_at * 1000000 + 0.5)
      if us < 0 then us = 0 end
      local rk = string.format('%016d%012d', us, seq) .. id
      fields[#fields + 1] = 'rk'; fields[#fields + 1] = rk
      ready[#ready + 1] = -tonumber(ARGV[i + 6]); ready[#ready + 1] = rk
    else
      redis.call('ZADD', QK .. 'sched', run_s, id)
    end
    fields[#fields + 1] = 'ev'
    fields[#fields + 1] = event('job.queued', id, ARGV[i + 5], queue, '{}', nil, true)
    redis.call('HSET', jk, unpack(fields))
    indexed[#indexed + 1] = NOWS; indexed[#indexed + 1] = id
    created = created + 1
    put(id, 1, pstate('queued', run_s), queue, 0)
  end
end
flush()
if created > 0 then wake(created) end
return out
