-- ARGV[4] queue; then per job: id task data priority delay at max_attempts timeout lease
-- dedup replace. Returns per job: id, created (1/0), public state, queue, replaced (1/0).
local queue = ARGV[4]
local out = {}
local created = 0
redis.call('SADD', G .. 'queues', queue)

local function due_time(i)
  if ARGV[i + 5] ~= '' then
    local at = tonumber(ARGV[i + 5])
    return at, fmt(at)
  elseif tonumber(ARGV[i + 4]) > 0 then
    local at = NOW + tonumber(ARGV[i + 4])
    return at, fmt(at)
  end
  return NOW, NOWS
end

local function put(a, b, c, d, e)
  local n = #out
  out[n + 1] = a; out[n + 2] = b; out[n + 3] = c; out[n + 4] = d; out[n + 5] = e
end

for i = 5, #ARGV, 11 do
  local id, dk = ARGV[i], ARGV[i + 9]
  local jk = QK .. 'j:' .. id
  local live = false
  if dk ~= '' then live = redis.call('HGET', G .. 'dedup', dk) end
  if live then
    local sp = string.find(live, ' ', 1, true)
    local lq, lid = string.sub(live, 1, sp - 1), string.sub(live, sp + 1)
    local own = QK
    QK = '{' .. P .. ':' .. lq .. '}:'  -- the live job's queue, which may be another
    local ljk = QK .. 'j:' .. lid
    local f = redis.call('HMGET', ljk, 's', 'r', 't')
    local replaced = 0
    if ARGV[i + 10] == '1' and f[1] == 'queued' then
      -- Debounce: the newest payload wins and its delay starts over.
      redis.call('HSET', ljk, 'd', ARGV[i + 2], 'p', ARGV[i + 3], 'm', ARGV[i + 6],
        'to', ARGV[i + 7])
      unplace(ljk, lid)
      local run_at, run_s = due_time(i)
      requeue(ljk, lid, 'queued', run_at, run_s)
      event('job.queued', lid, f[3], lq, '{"replaced":true}')
      wake(1)
      replaced = 1
      f = redis.call('HMGET', ljk, 's', 'r')
    end
    QK = own
    put(lid, 0, pstate(f[1], f[2]), lq, replaced)
  elseif redis.call('EXISTS', jk) == 1 then
    -- The same id again: a client that resent after a dropped reply. Enqueue is idempotent.
    local f = redis.call('HMGET', jk, 's', 'r')
    put(id, 1, pstate(f[1], f[2]), queue, 0)
  else
    local run_at, run_s = due_time(i)
    local seq = redis.call('INCR', QK .. 'seq')
    redis.call('HSET', jk, 't', ARGV[i + 1], 'q', queue, 'd', ARGV[i + 2], 'p', ARGV[i + 3],
      'm', ARGV[i + 6], 'to', ARGV[i + 7], 'l', ARGV[i + 8], 'c', NOWS, 'r', run_s,
      's', 'queued', 'a', 0)
    if dk ~= '' then
      redis.call('HSET', jk, 'k', dk)
      redis.call('HSET', G .. 'dedup', dk, queue .. ' ' .. id)
    end
    redis.call('ZADD', QK .. 'all', NOWS, id)
    redis.call('ZADD', QK .. 'i:queued', NOWS, id)
    place(jk, id, tonumber(ARGV[i + 3]), run_at, run_s, seq)
    event('job.queued', id, ARGV[i + 1], queue, '{}')
    created = created + 1
    put(id, 1, pstate('queued', run_s), queue, 0)
  end
end
if created > 0 then wake(created) end
return out
