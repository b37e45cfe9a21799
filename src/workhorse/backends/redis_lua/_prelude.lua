-- Shared by every script (prepended before loading). ARGV[1] is the queue's key prefix
-- '{P:Q}:' ('' when no queue is involved), ARGV[2] the global prefix '{P}:', ARGV[3] the
-- event log's cap; a script's own arguments start at ARGV[4]. Redis runs a script as one
-- step, so a job is never seen half-moved, and TIME makes the server's clock the only one.
local QK = ARGV[1]
local G = ARGV[2]
local P = string.sub(G, 2, -3)
local MAXEV = ARGV[3]
local _t = redis.call('TIME')
local NOW = tonumber(_t[1]) + tonumber(_t[2]) / 1000000
local NOWS = _t[1] .. '.' .. string.format('%06d', tonumber(_t[2]))

local function fmt(x)
  return string.format('%.6f', x)
end

-- The stream's own ids (<ms>-<seq>, always rising) give the log its cursor: the client
-- reads <ms>-<seq> as the integer ms * 1000000 + seq.
local function event(typ, id, task, queue, data, at)
  redis.call('XADD', G .. 'events', 'MAXLEN', '~', MAXEV, '*', 'e', typ, 'j', id,
    't', task, 'q', queue, 'd', data, 'a', at or NOWS)
end

local function pstate(s, r)
  if s == 'queued' and tonumber(r) > NOW then
    return 'scheduled'
  end
  return s
end

local function wake(n)
  local room = 32 - redis.call('LLEN', QK .. 'wake')
  if n > room then n = room end
  if n > 0 then
    local ones = {}
    for i = 1, n do ones[i] = '1' end
    redis.call('RPUSH', QK .. 'wake', unpack(ones))
  end
end

local function add_logs(jk, lg)
  if lg == nil or lg == '' then return end
  local cur = redis.call('HGET', jk, 'lg')
  if not cur then
    redis.call('HSET', jk, 'lg', lg)
  else
    redis.call('HSET', jk, 'lg', string.sub(cur, 1, -2) .. ',' .. string.sub(lg, 2))
  end
end

-- A due job goes to 'ready' (score -priority; the member sorts by due time, then FIFO
-- sequence, then carries the id), a future one to 'sched' (score: due time).
local function place(jk, id, prio, run_at, run_s, seq)
  if run_at <= NOW then
    local us = math.floor(run_at * 1000000 + 0.5)
    if us < 0 then us = 0 end
    local rk = string.format('%016d%012d', us, seq) .. id
    redis.call('ZADD', QK .. 'ready', -prio, rk)
    redis.call('HSET', jk, 'rk', rk)
  else
    redis.call('ZADD', QK .. 'sched', run_s, id)
  end
end

-- Take a queued job out of 'ready' or 'sched' (before cancelling or moving it).
local function unplace(jk, id)
  local rk = redis.call('HGET', jk, 'rk')
  if rk then
    redis.call('ZREM', QK .. 'ready', rk)
    redis.call('HDEL', jk, 'rk')
  else
    redis.call('ZREM', QK .. 'sched', id)
  end
end

local function requeue(jk, id, old, run_at, run_s)
  local f = redis.call('HMGET', jk, 'p', 'c')
  local seq = redis.call('INCR', QK .. 'seq')
  redis.call('HSET', jk, 's', 'queued', 'r', run_s)
  redis.call('HDEL', jk, 'tk', 'x', 'w', 'cx')
  if old == 'active' then
    redis.call('ZREM', QK .. 'active', id)
  else
    redis.call('ZREM', QK .. 'f:' .. old, id)
  end
  redis.call('ZREM', QK .. 'i:' .. old, id)
  redis.call('ZADD', QK .. 'i:queued', f[2], id)
  place(jk, id, tonumber(f[1]), run_at, run_s, seq)
end

-- queued or active -> completed / failed / cancelled; the dedup key is released with it.
local function end_job(jk, id, old, state)
  local f = redis.call('HMGET', jk, 'c', 'k', 'q')
  redis.call('HSET', jk, 's', state, 'f', NOWS)
  redis.call('HDEL', jk, 'tk', 'x', 'rk')
  if old == 'active' then redis.call('ZREM', QK .. 'active', id) end
  redis.call('ZREM', QK .. 'i:' .. old, id)
  redis.call('ZADD', QK .. 'i:' .. state, f[1], id)
  redis.call('ZADD', QK .. 'f:' .. state, NOWS, id)
  if f[2] then
    if redis.call('HGET', G .. 'dedup', f[2]) == f[3] .. ' ' .. id then
      redis.call('HDEL', G .. 'dedup', f[2])
    end
  end
end

local function record(id)
  local jk = QK .. 'j:' .. id
  local h = redis.call('HGETALL', jk)
  if #h == 0 then return false end
  local f = redis.call('HMGET', jk, 's', 'r')
  return {id, pstate(f[1], f[2]), h}
end

-- Jobs that just finished: those a caller is waiting for ('watch', see fetch.lua) are
-- published whole on the 'finished' channel, so the waiter needs no further round trip.
-- Unwatched jobs cost one SREM. A message is records, each: the number of strings that
-- follow, then id, state and the record's fields and values, every string as <len>:<bytes>.
local function notify_finished(ids)
  local parts = {}
  for _, id in ipairs(ids) do
    if redis.call('SREM', QK .. 'watch', id) == 1 then
      local rec = record(id)
      if rec then
        parts[#parts + 1] = (#rec[3] + 2) .. ':'
        parts[#parts + 1] = #id .. ':' .. id
        parts[#parts + 1] = #rec[2] .. ':' .. rec[2]
        for _, v in ipairs(rec[3]) do parts[#parts + 1] = #v .. ':' .. v end
      end
    end
  end
  if #parts > 0 then
    redis.call('PUBLISH', G .. 'finished', table.concat(parts))
  end
end
