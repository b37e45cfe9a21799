-- Shared by every script (prepended before loading). ARGV[1] is the queue's key prefix
-- '{P:Q}:' ('' when no queue is involved), ARGV[2] the global prefix '{P}:', ARGV[3] the
-- event log's cap; a script's own arguments start at ARGV[4]. KEYS[1] names a key of the
-- one slot the call touches ({P:Q} or, without a queue, {P}), so a cluster client routes
-- it: a script never touches two slots. Redis runs a script as one step, so a job is never
-- seen half-moved, and TIME makes the server's clock the only one.
-- Lines '-- [name]' start sections: a script listed in scripts.SECTIONS gets this head and
-- only the sections it names (every function here is built anew on each call).
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

-- Per stream, the newest entry id this call added to it (through xadd_after or event()): a
-- bound the stream's last id is at or past, so an entry to follow an id not past it takes
-- '*' at once, not the XADD that fails first (most of a finish's items' entries).
local LAST = {}

-- Whether the entry id a (<ms>-<seq>, no leading zeros) sorts after b. Plain finds, not
-- patterns (Lua 5.1 matches a pattern by a call per character), and the millisecond parts
-- compared as strings, not numbers (tonumber of 13 digits costs a step ~8k instructions):
-- the longer is the later, and digit strings of one length sort as their numbers.
local function id_after(a, b)
  local ad, bd = string.find(a, '-', 1, true), string.find(b, '-', 1, true)
  if ad ~= bd then return ad > bd end
  local am, bm = string.sub(a, 1, ad - 1), string.sub(b, 1, bd - 1)
  if am ~= bm then return am > bm end
  return tonumber(string.sub(a, ad + 1)) > tonumber(string.sub(b, bd + 1))
end

-- An entry of the stream that sorts after the entry 'floor' (<ms>-<seq>) of another
-- stream in the merged log (events() in backend.py): the id just after it, or the one
-- '*' gives when this stream is past it already (then '*' is past it too).
local function xadd_after(stream, floor, ...)
  local last = LAST[stream]
  local eid
  if last and not id_after(floor, last) then
    eid = redis.call('XADD', stream, 'MAXLEN', '~', MAXEV, '*', ...)
  else
    local d = string.find(floor, '-', 1, true)
    eid = redis.pcall('XADD', stream, 'MAXLEN', '~', MAXEV,
      string.sub(floor, 1, d) .. string.format('%d', tonumber(string.sub(floor, d + 1)) + 1), ...)
    if type(eid) == 'table' and eid.err then
      eid = redis.call('XADD', stream, 'MAXLEN', '~', MAXEV, '*', ...)
    end
  end
  LAST[stream] = eid
  return eid
end

-- Into the stream of the slot at hand: the queue's ({P:Q}:events), or {P}:events for
-- events with no queue. The stream's own ids (<ms>-<seq>, always rising) give the log its
-- cursor: the client reads <ms>-<seq> as the integer ms * 1000000 + seq and merges the
-- streams (see events() in backend.py).
-- A job's record keeps the ids of its newest events ('ev': the entry ids, spaces between),
-- so that its page reads them by id (jobevents.lua) instead of walking the stream; they go
-- with the record. Cut to its last EV_BYTES characters, at least the newest 100 ids (an id
-- is at most 20 characters while milliseconds have 13 digits). fresh: the caller is
-- creating (or writing) the record and writes the id with the rest (see ev_added). after:
-- an entry id of another stream this event must come after (nil: none; see xadd_after).
-- Returns the entry id.
local EV_BYTES = 2100

-- A record's 'ev' (ev: as read, nil for a record an older version wrote) with the entry id
-- eid added: what a caller that reads and writes the record anyway sets, with fresh = true.
local function ev_added(ev, eid)
  if not ev then return eid end
  ev = ev .. ' ' .. eid
  if #ev > EV_BYTES then
    ev = string.sub(ev, string.find(ev, ' ', #ev - EV_BYTES + 1, true) + 1)
  end
  return ev
end
local function event(typ, id, task, queue, data, at, fresh, after)
  local stream = G .. 'events'
  if QK ~= '' then stream = QK .. 'events' end
  local eid
  if after then
    eid = xadd_after(stream, after, 'e', typ, 'j', id, 't', task, 'q', queue, 'd', data,
      'a', at or NOWS)
  else
    eid = redis.call('XADD', stream, 'MAXLEN', '~', MAXEV, '*', 'e', typ, 'j', id,
      't', task, 'q', queue, 'd', data, 'a', at or NOWS)
    LAST[stream] = eid
  end
  if QK == '' or id == '' or fresh then return eid end
  local jk = QK .. 'j:' .. id
  local ev = redis.call('HGET', jk, 'ev')
  if ev then
    redis.call('HSET', jk, 'ev', ev_added(ev, eid))
  elseif redis.call('EXISTS', jk) == 1 then
    redis.call('HSET', jk, 'ev', eid)  -- a record an older version wrote
  end
  return eid
end

local function pstate(s, r)
  local at = tonumber(r)
  if s == 'queued' and at and at > NOW then
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

-- [skiplists]
-- The indexes that stay small in steady state (a short queue's 'i:queued', a store with
-- few kept jobs' 'all', 'i:completed', 'f:completed') are kept as skiplists once they hold
-- SMALL members: as a listpack (up to zset-max-listpack-entries, 128) a set inserts by
-- parsing the score of every member before the new one (strtod, ~1k instructions each:
-- fractional seconds are stored as text), and these scores grow, so every insert walks it
-- all. A member longer than zset-max-listpack-value converts a set for good (until it
-- empties; ZREM does not convert it back): skiplisted() adds one before a call's members,
-- the caller removes it (LONG) after them (an empty set is deleted, so not before).
-- SKIPLISTS: per key, true if seen a skiplist, or a bound on its members if not (those
-- counted when last asked plus those added since: removals only lower it; adds by other
-- writers go unseen, which only delays a conversion), so a set is asked about once, or
-- once per SMALL members added, not on every call (the Function library keeps the table
-- between calls; a script call builds it anew). It is forgotten every FORGET checks: a
-- set emptied since is a listpack again (and the table stays small). remember false: ask
-- on every call (the lease indexes, which often empty).
-- LIBRARY: true in the Function library (scripts.load_library sets it). A script call
-- (Redis 6.2, Cluster) starts with an empty table: it asks about a set it may not convert
-- on one call in 8 (by the clock's microseconds): asking on each (4 commands a job) cost
-- about what the walks saved, and only cost once the sets passed 128.
local LIBRARY = false
local SMALL, FORGET = 16, 1000
local SKIPLISTS, checks = {}, 0
local LONG

local function skiplisted(key, adding, remember)
  if remember then
    checks = checks + 1
    if checks >= FORGET then SKIPLISTS, checks = {}, 0 end
    local known = SKIPLISTS[key]
    if known == true then return false end
    if known and known + adding < SMALL then
      SKIPLISTS[key] = known + adding
      return false
    end
    if not (known or LIBRARY or adding >= SMALL) and tonumber(_t[2]) % 8 ~= 0 then
      return false
    end
  end
  local enc = redis.call('OBJECT', 'ENCODING', key)
  if enc ~= 'skiplist' then
    if enc then adding = adding + redis.call('ZCARD', key) end
    if adding < SMALL then
      if remember then SKIPLISTS[key] = adding end
      return false
    end
    LONG = LONG or string.rep('~', 128)
    redis.call('ZADD', key, 0, LONG)
  end
  if remember then SKIPLISTS[key] = true end
  return enc ~= 'skiplist'
end

-- [revs]
-- {P}:revs scores each flow run by its newest event's millisecond (see publish.lua): a call
-- notes its runs' entry ids (revs: the runs in order, and run -> its newest entry id) and
-- writes them in one ZADD, not one per event.
local function rev_seen(revs, run, eid)
  if not revs[run] then revs[#revs + 1] = run end
  revs[run] = eid
end

local function scored(revs)
  local args = {}
  for k, run in ipairs(revs) do
    args[#args + 1] = tonumber(string.match(revs[run], '^%d+')); args[#args + 1] = run
    if #args >= 2000 or k == #revs then  -- unpack()'s stack limit
      redis.call('ZADD', G .. 'revs', unpack(args)); args = {}
    end
  end
end

-- [publishing]
-- publish.lua's work, shared with start.lua: the events of ARGV[from .. to], seven each
-- (type job task queue data-JSON at ('' = now) run ('' = none)). A flow run's event is
-- also added, under the same id, to the run's stream {P}:rev:<run> (what run_events reads);
-- {P}:revs scores each run by its newest event's millisecond, so a run's stream goes once
-- the log has dropped every event of it. Returns the last event's entry id (nil: none).
local function publish_events(from, to)
  local revs = {}  -- the runs whose events this call wrote (rev_seen)
  local id = nil
  for i = from, to, 7 do
    local at = ARGV[i + 5]
    if at == '' then at = nil end
    id = event(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], at)
    local run = ARGV[i + 6]
    if run ~= '' then
      redis.call('XADD', G .. 'rev:' .. run, 'MAXLEN', '~', MAXEV, id, 'e', ARGV[i],
        'j', ARGV[i + 1], 't', ARGV[i + 2], 'q', ARGV[i + 3], 'd', ARGV[i + 4], 'a', at or NOWS)
      rev_seen(revs, run, id)
    end
  end
  if #revs > 0 then scored(revs) end
  local oldest = redis.call('XRANGE', G .. 'events', '-', '+', 'COUNT', 1)[1]
  if oldest then
    local gone = redis.call('ZRANGEBYSCORE', G .. 'revs', '-inf',
      '(' .. string.match(oldest[1], '^%d+'), 'LIMIT', 0, 16)
    for _, run in ipairs(gone) do
      redis.call('DEL', G .. 'rev:' .. run)
      redis.call('ZREM', G .. 'revs', run)
    end
  end
  return id
end

-- [counting]
-- counter.lua's work, shared with start.lua: from ARGV[from] to ARGV[to] a counter's key,
-- n and ttl milliseconds ('' = none) each, added in order. Returns their new values. The
-- TTL is set only on a counter that has none, so adding does not push its expiry back.
local function add_counters(from, to)
  local out = {}
  for i = from, to, 3 do
    local key = ARGV[i]
    out[#out + 1] = redis.call('INCRBY', key, ARGV[i + 1])
    if ARGV[i + 2] ~= '' and redis.call('PTTL', key) == -1 then
      redis.call('PEXPIRE', key, ARGV[i + 2])
    end
  end
  return out
end

-- [logs]
-- A job keeps its newest log lines within the caps: 'lg' holds them (a JSON array), 'ls'
-- their sizes (10 digits each, so the oldest are cut off without parsing), 'ld' how many
-- were dropped. arg: '' (nothing to add) or 'DROPPED:SIZES:LINES', the lines the worker
-- dropped unsent, the new lines' sizes and the lines (a JSON array): one argument, since
-- each argument costs every finish. ml/mb: max_log_lines/max_log_bytes. (A record an older
-- version wrote has no 'ls': its lines are appended uncapped.)
local function add_logs(jk, arg, ml, mb)
  if arg == nil or arg == '' then return end
  local a = string.find(arg, ':', 1, true)
  local b = string.find(arg, ':', a + 1, true)
  local dr, ls, lg = tonumber(string.sub(arg, 1, a - 1)), string.sub(arg, a + 1, b - 1),
    string.sub(arg, b + 1)
  if dr > 0 then redis.call('HINCRBY', jk, 'ld', dr) end
  if lg == '' then return end
  local cur = redis.call('HMGET', jk, 'lg', 'ls')
  if cur[1] and not cur[2] then
    redis.call('HSET', jk, 'lg', string.sub(cur[1], 1, -2) .. ',' .. string.sub(lg, 2))
    return
  end
  local all, sizes = lg, ls
  if cur[1] then
    all = string.sub(cur[1], 1, -2) .. ',' .. string.sub(lg, 2)
    sizes = cur[2] .. ls
  end
  local n = #sizes / 10
  local total = #all - n - 1  -- the lines' bytes: less the brackets and the commas
  ml, mb = tonumber(ml), tonumber(mb)
  local drop, cut = 0, 0
  while drop < n and (n - drop > ml or total > mb) do
    local size = tonumber(string.sub(sizes, drop * 10 + 1, drop * 10 + 10))
    total = total - size
    cut = cut + size + 1
    drop = drop + 1
  end
  if drop == n then
    redis.call('HDEL', jk, 'lg', 'ls')
  elseif drop > 0 then
    redis.call('HSET', jk, 'lg', '[' .. string.sub(all, 2 + cut), 'ls',
      string.sub(sizes, drop * 10 + 1))
  else
    redis.call('HSET', jk, 'lg', all, 'ls', sizes)
  end
  if drop > 0 then redis.call('HINCRBY', jk, 'ld', drop) end
end

-- [placing]
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

-- [kv]
-- The key-value store's keys ({P}:kv:<key>): whether one is live, and set_if_absent's
-- write: the key set unless live; px '' for a lasting key, listed for scan ({P}:kvidx).
local function kv_live(key)
  return redis.call('EXISTS', G .. 'kv:' .. key) == 1
end

local function kv_setnx(key, value, px)
  local kk = G .. 'kv:' .. key
  if px ~= '' then
    return redis.call('SET', kk, value, 'NX', 'PX', px) ~= false
  end
  if redis.call('SET', kk, value, 'NX') then
    redis.call('ZADD', G .. 'kvidx', 0, key)
    return true
  end
  return false
end

-- kv.lua's 'sets', shared with start.lua: the key, value pairs of ARGV[from .. to], each
-- set without a ttl and listed for scan.
local function kv_sets(from, to)
  for i = from, to, 2 do
    redis.call('SET', G .. 'kv:' .. ARGV[i], ARGV[i + 1])
    redis.call('ZADD', G .. 'kvidx', 0, ARGV[i])
  end
end

-- [enqueuing]
-- Writes new jobs into the queue at hand (QK, named queue): enqueue.lua's whole work,
-- shared with the writes of claimed jobs (claim_jobs). items: the ARGV indexes where the
-- jobs' six arguments start, in order (nil: first, first + step, ... to the last argument,
-- enqueue.lua's, which then builds no table): id data delay at dedup, and the ARGV index
-- where its task part starts (task priority max_attempts timeout lease replace keep_for
-- hold max_stalls). watch: their finish is published whole (see fetch.lua's mode 2).
-- floor: an entry id of another stream the first job.queued must come after (nil: none).
-- Returns per job written or found 1 (created, queued) or 2 (created, scheduled): the
-- common case, as the client knows the id and queue it sent; otherwise {id, created
-- (1/0), public state, queue, replaced (1/0)}. A plain call whose every job was created
-- (and so queued) gets their number instead of the list.
-- A dedup key is the queue's own ({P:Q}:dedup): the client lists the queue in {P}:queues
-- before the first call, as that set lives in another slot.
-- A ready key's seq part (12 digits, zero-padded) for the counts a call runs through: made
-- once, not formatted per job (in the Function library the table outlives the call).
local SEQ_PAD = {}

-- A new record leaves out the options that hold the value every reader takes for an
-- absent field (the older versions' too): no timeout, no lease of its own, max_stalls 3.
-- Each field of an HSET costs ~2.5k instructions. lean: whether task part p has none of
-- them; with_options: record fields f with those of p's that it has, for HSET.
local function lean(p)
  return ARGV[p + 3] == '' and ARGV[p + 4] == '' and ARGV[p + 8] == '3'
end

local function with_options(f, p)
  if ARGV[p + 3] ~= '' then f[#f + 1] = 'to'; f[#f + 1] = ARGV[p + 3] end
  if ARGV[p + 4] ~= '' then f[#f + 1] = 'l'; f[#f + 1] = ARGV[p + 4] end
  if ARGV[p + 8] ~= '3' then f[#f + 1] = 'ms'; f[#f + 1] = ARGV[p + 8] end
  return f
end

-- A job's due time (number, text) from its arguments at ARGV[i].
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

-- A new job's record in queue: the fields every job has, then ... (field, value pairs).
-- (This and due_time are the library's own, not built anew on each call as a closure.)
local function write(jk, queue, i, p, run_s, ...)
  redis.call('HSET', jk, unpack(with_options({'t', ARGV[p], 'q', queue, 'd', ARGV[i + 1],
    'p', ARGV[p + 1], 'm', ARGV[p + 2], 'c', NOWS, 'r', run_s, 's', 'queued', 'a', '0', ...},
    p)))
end

-- Writes task part p's record template (see enqueue_jobs) and returns its key; the job's
-- own fields come first as placeholders because an HSET replaces a field it finds early
-- but appends a new one only after scanning the whole record (rk's placeholder has the
-- usual 60 characters, 16 + 12 digits and a 32-digit id, so no realloc replaces it).
local RK_PLACE
local function template(queue, p)
  local tk = QK .. 'tmpl:' .. p
  RK_PLACE = RK_PLACE or string.rep('0', 60)
  redis.call('HSET', tk, unpack(with_options({'d', '', 'ev', '', 'rk', RK_PLACE, 't', ARGV[p],
    'q', queue, 'p', ARGV[p + 1], 'm', ARGV[p + 2], 'c', NOWS, 'r', NOWS, 's', 'queued',
    'a', '0'}, p)))
  return tk
end

local function enqueue_jobs(queue, watch, items, floor, first, step)
  local out, nout = {}, 0
  local created = 0
  local jobs = items and #items or math.floor((#ARGV - first) / step) + 1
  local seq = 0
  -- A plain call (enqueue.lua's step 2): each job is its id and payload, of the one task
  -- part just before them, due now, without a dedup key.
  local plain = step == 2
  local plain_p = plain and first - 9 or nil

  local function put(a, b, c, d, e)
    if watch and c ~= 'completed' and c ~= 'failed' and c ~= 'cancelled' then
      redis.call('SADD', QK .. 'watch', a)
    end
    nout = nout + 1
    out[nout] = {a, b, c, d, e}
  end

  local STREAM = QK .. 'events'
  -- A call of several jobs trims the event stream once, after its last XADD (three
  -- arguments less per job; nobody sees the stream between two of its entries).
  local TRIM = jobs == 1
  local NOWUS = _t[1] .. string.sub(NOWS, -6)  -- NOW in microseconds, 16 digits
  local ready, indexed, nready, nindexed = {}, {}, 0, 0  -- the tables and their lengths
  -- seq: the FIFO order of this call's jobs: they share one TIME, and no other call sees
  -- the same microsecond (one server runs them one after another), so a count from 1
  -- orders them without the queue's seq key (a command per call, ~8 % of a one-job call).
  -- Each task part's ready score (-priority), as the string redis.call would make of the
  -- number: once per call, not per job.
  local scores = {}
  local parts = not plain and {}  -- a job's task part index as sent -> as a number
  -- A task part -> its record template's key; the keys made (a call of 4 jobs or more).
  local templates, made = jobs >= 4 and {}, jobs >= 4 and {}

  -- A call without dedup keys (the common one) puts every id into 'all' first, NX: if each
  -- was added, none of its jobs existed (a resent call's did), so no job needs an EXISTS of
  -- its own. 'all' lists exactly the ids that have a record: purge and release delete both.
  local listed = true
  for k = 1, plain and 0 or jobs do  -- numeric loops: ipairs() is a function call per job
    if ARGV[(items and items[k] or first + (k - 1) * step) + 4] ~= '' then
      listed = false; break
    end
  end
  local ALL, QUEUED = QK .. 'all', QK .. 'i:queued'
  local long_all = skiplisted(ALL, jobs, true)
  local long_queued = skiplisted(QUEUED, jobs, true)
  local fresh = false
  if listed and jobs > 0 then
    local members, added, n = {}, 0, 0
    for k = 1, jobs do
      members[n + 1] = NOWS
      members[n + 2] = ARGV[items and items[k] or first + (k - 1) * step]
      n = n + 2
      if n >= 2000 or k == jobs then  -- unpack()'s stack limit
        added = added + redis.call('ZADD', ALL, 'NX', unpack(members, 1, n))
        members, n = {}, 0
      end
    end
    fresh = added == jobs
  end

  local function flush()
    if nready > 0 then
      redis.call('ZADD', QK .. 'ready', unpack(ready, 1, nready)); ready, nready = {}, 0
    end
    if nindexed > 0 then
      if not listed then redis.call('ZADD', ALL, unpack(indexed, 1, nindexed)) end
      redis.call('ZADD', QUEUED, unpack(indexed, 1, nindexed))
      indexed, nindexed = {}, 0
    end
  end

  -- enqueue.lua's plain form (one task part, due now, no dedup key) with every job new and
  -- no keep_for or waiting caller takes this loop, the one below without the branches such
  -- jobs never take (~3k server instructions a job).
  local from = 1
  if plain and fresh and templates and ARGV[plain_p + 6] == '' and ARGV[plain_p + 7] ~= '1' then
    local p, JK = plain_p, QK .. 'j:'
    local task, score = ARGV[p], tostring(-tonumber(ARGV[p + 1]))
    local tk = template(queue, p)
    made[1] = tk
    for i = first, first + 2 * (jobs - 1), 2 do
      if nindexed >= 2000 then flush() end  -- unpack() has a stack limit
      local id = ARGV[i]
      local jk = JK .. id
      local eid = redis.call('XADD', STREAM, '*', 'e', 'job.queued', 'j', id, 't', task,
        'q', queue, 'd', '{}', 'a', NOWS)  -- as event() writes it
      seq = seq + 1
      local pad = SEQ_PAD[seq]
      if not pad then
        pad = string.format('%012d', seq)
        if seq <= 4096 then SEQ_PAD[seq] = pad end
      end
      local rk = NOWUS .. pad .. id
      if redis.call('COPY', tk, jk) == 1 then
        redis.call('HSET', jk, 'd', ARGV[i + 1], 'ev', eid, 'rk', rk)
      else  -- as below
        write(jk, queue, i, p, NOWS, 'ev', eid, 'rk', rk)
      end
      ready[nready + 1] = score; ready[nready + 2] = rk; nready = nready + 2
      indexed[nindexed + 1] = NOWS; indexed[nindexed + 2] = id; nindexed = nindexed + 2
      if watch then redis.call('SADD', QK .. 'watch', id) end
    end
    -- Every job was created and queued, so their number answers for them (only
    -- enqueue.lua's plain form gets here, and its client reads that).
    created, out, from = jobs, jobs, jobs + 1
  end

  for k = from, jobs do
    local i = items and items[k] or first + (k - 1) * step
    if nindexed >= 2000 then flush() end  -- unpack() has a stack limit
    local id, dk, p = ARGV[i], '', plain_p
    if not plain then
      local at_part = ARGV[i + 5]
      dk, p = ARGV[i + 4], parts[at_part]
      if not p then p = tonumber(at_part); parts[at_part] = p end
    end
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
      if not plain and (ARGV[i + 3] ~= '' or ARGV[i + 2] ~= '0.0') then
        run_at, run_s = due_time(i)
      end
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
      if floor then
        eid = xadd_after(STREAM, floor, 'e', 'job.queued', 'j', id, 't', ARGV[p],
          'q', queue, 'd', '{}', 'a', NOWS)
        floor = nil  -- the next entries of this stream follow this one
      elseif TRIM then
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
        local pad = SEQ_PAD[seq]
        if not pad then
          pad = string.format('%012d', seq)
          if seq <= 4096 then SEQ_PAD[seq] = pad end
        end
        local rk = us .. pad .. id
        local score = scores[p]
        if not score then
          score = tostring(-tonumber(ARGV[p + 1]))
          scores[p] = score
        end
        ready[nready + 1] = score; ready[nready + 2] = rk; nready = nready + 2
        if extra then
          extra[#extra + 1] = 'rk'; extra[#extra + 1] = rk
          write(jk, queue, i, p, run_s, 'ev', eid, unpack(extra))
        elseif jobs >= 4 and run_s == NOWS then
          -- The fields a task part's jobs share are written once, to a template the call
          -- copies per job and deletes at its end: each field of an HSET scans the record
          -- for it first, so a job's record costs its own three fields, not all of them.
          local tk = templates[p]
          if not tk then
            tk = template(queue, p)
            templates[p] = tk; made[#made + 1] = tk
          end
          if redis.call('COPY', tk, jk) == 1 then
            redis.call('HSET', jk, 'd', ARGV[i + 1], 'ev', eid, 'rk', rk)
          else  -- no job's record is there (checked above); were one, it is written whole
            write(jk, queue, i, p, run_s, 'ev', eid, 'rk', rk)
          end
        elseif lean(p) then  -- write()'s HSET, inlined for the common job
          redis.call('HSET', jk, 't', ARGV[p], 'q', queue, 'd', ARGV[i + 1], 'p', ARGV[p + 1],
            'm', ARGV[p + 2], 'c', NOWS, 'r', run_s, 's', 'queued', 'a', '0', 'ev', eid, 'rk', rk)
        else
          write(jk, queue, i, p, run_s, 'ev', eid, 'rk', rk)
        end
      else
        redis.call('ZADD', QK .. 'sched', run_s, id)
        if extra then
          write(jk, queue, i, p, run_s, 'ev', eid, unpack(extra))
        else
          write(jk, queue, i, p, run_s, 'ev', eid)
        end
      end
      indexed[nindexed + 1] = NOWS; indexed[nindexed + 2] = id; nindexed = nindexed + 2
      created = created + 1
      if watch then redis.call('SADD', QK .. 'watch', id) end
      nout = nout + 1
      if run_at > NOW then out[nout] = 2 else out[nout] = 1 end
    end
  end
  flush()
  if long_all then redis.call('ZREM', ALL, LONG) end
  if long_queued then redis.call('ZREM', QUEUED, LONG) end
  if made and #made > 0 then redis.call('DEL', unpack(made)) end
  if not TRIM and created > 0 then redis.call('XTRIM', STREAM, 'MAXLEN', '~', MAXEV) end
  if created > 0 then wake(created) end
  return out
end

-- [claims]
-- Jobs written with their claims (Backend.enqueue_claimed; a flow step's follow-ups),
-- from ARGV[at]: K, K task parts (as enqueue.lua's), then runs of one queue and owner,
-- each: the queue's key prefix, the queue, its owner, n, and n items of nine: the job's
-- six arguments (enqueue_jobs), its claim's key, value and unless key ('' for none).
-- An item writes nothing while its unless key is live; otherwise its key is set unless
-- live, and its job written unless a job with its id or a live one with its dedup key
-- exists. A run is written only if owners[owner] (or owner 0). Every claim is settled
-- first, in order; then each queue's jobs are written by one enqueue_jobs (in their
-- order), so that its index writes, trim and wake-up are one per queue, not per run
-- (a finish carries a follow-up per step). The queues switch the queue at hand (QK),
-- which is the caller's again after. floor: as enqueue_jobs's, for the first job of each
-- queue but the caller's.
-- Returns per item of the runs written: won (1/0) + 2 * (0 not written, 1 written
-- queued, 2 written scheduled).
local function claim_jobs(at, owners, floor)
  local home, out = QK, {}
  local queues, order = {}, {}  -- key prefix -> {queue, its items' ARGV indexes}
  local slot = {}  -- an item's ARGV index -> its place in out
  local listed = {}  -- the claim keys set, for {P}:kvidx (as kv_setnx lists them)
  at = at + 1 + 9 * tonumber(ARGV[at])
  while at <= #ARGV do
    local qk, queue, owner, n = ARGV[at], ARGV[at + 1], ARGV[at + 2], tonumber(ARGV[at + 3])
    local first, last = at + 4, at + 3 + 9 * n
    if owner == '0' or owners[owner] then
      local q = queues[qk]
      if not q then
        q = {queue, {}}
        queues[qk] = q
        order[#order + 1] = qk
      end
      local items = q[2]
      for i = first, last, 9 do
        local unless = ARGV[i + 8]
        if unless ~= '' and kv_live(unless) then
          out[#out + 1] = 0
        else
          local code = 0
          if redis.call('SET', G .. 'kv:' .. ARGV[i + 6], ARGV[i + 7], 'NX') then
            code = 1
            listed[#listed + 1] = 0; listed[#listed + 1] = ARGV[i + 6]
            if #listed >= 2000 then  -- unpack()'s stack limit
              redis.call('ZADD', G .. 'kvidx', unpack(listed)); listed = {}
            end
          end
          out[#out + 1] = code
          items[#items + 1] = i
          slot[i] = #out
        end
      end
    end
    at = last + 1
  end
  if #listed > 0 then redis.call('ZADD', G .. 'kvidx', unpack(listed)) end
  for _, qk in ipairs(order) do
    local q = queues[qk]
    QK = qk
    local after = nil
    if qk ~= home then after = floor end
    local written = enqueue_jobs(q[1], false, q[2], after)
    for k, i in ipairs(q[2]) do
      if type(written[k]) == 'number' then out[slot[i]] = out[slot[i]] + 2 * written[k] end
    end
  end
  QK = home
  return out
end

-- [records]
-- queued or active -> completed / failed / cancelled; the dedup key is released with it.
-- A caller that read the record's 'c' and 'k' passes them (c, k: then also sets, dels, the
-- fields of its own to set and remove, in the same HSET and HDEL; one command each for a
-- finish, not three).
local function end_job(jk, id, old, state, c, k, sets, dels)
  if not c then
    local f = redis.call('HMGET', jk, 'c', 'k')
    c, k = f[1], f[2]
  end
  if sets then
    redis.call('HSET', jk, 's', state, 'f', NOWS, unpack(sets))
    redis.call('HDEL', jk, 'tk', 'x', 'rk', unpack(dels))
  else
    redis.call('HSET', jk, 's', state, 'f', NOWS)
    redis.call('HDEL', jk, 'tk', 'x', 'rk')
  end
  if old == 'active' then redis.call('ZREM', QK .. 'active', id) end
  redis.call('ZREM', QK .. 'i:' .. old, id)
  local ik, fk = QK .. 'i:' .. state, QK .. 'f:' .. state
  local long_i, long_f = skiplisted(ik, 1, true), skiplisted(fk, 1, true)
  redis.call('ZADD', ik, c, id)
  redis.call('ZADD', fk, NOWS, id)
  if long_i then redis.call('ZREM', ik, LONG) end
  if long_f then redis.call('ZREM', fk, LONG) end
  if k and redis.call('HGET', QK .. 'dedup', k) == id then
    redis.call('HDEL', QK .. 'dedup', k)
  end
end

local function record(id)
  local jk = QK .. 'j:' .. id
  local h = redis.call('HGETALL', jk)
  if #h == 0 then return false end
  local f = redis.call('HMGET', jk, 's', 'r')
  return {id, pstate(f[1] or '', f[2]), h}  -- no state: the client quarantines it
end

-- Jobs that just finished: those a caller is waiting for ('watch', see fetch.lua) are
-- published whole on the 'finished' channel, so the waiter needs no further round trip.
-- Unwatched jobs cost one SREM (none while nobody waits). A message is records, each: the
-- number of strings that follow, then id, state and the record's fields and values, every
-- string as <len>:<bytes>.
local function notify_finished(ids)
  -- Nobody waiting (the common case): one EXISTS for the call, not an SREM per job.
  if #ids > 1 and redis.call('EXISTS', QK .. 'watch') == 0 then return end
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

-- Quarantine: a job record that cannot be decoded (written by something else, or damaged)
-- ends failed, out of every index, with the raw bytes of its fields in the error. It must
-- never stop a claim or a read. The data field keeps its bytes; the others that do not
-- parse are removed (their bytes are in the error).
-- (Tables are built only when needed: the prelude runs on every script call.)
local B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
local RAW_CAP = 4096

local function labels()
  return {t = 'task', q = 'queue', d = 'data', p = 'priority', m = 'max_attempts',
    to = 'timeout', l = 'lease', c = 'created_at', r = 'run_at', s = 'state', a = 'attempts',
    pg = 'progress', res = 'result', e = 'error', lg = 'logs', sl = 'stalls', ms = 'max_stalls'}
end

local function b64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = string.byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local k1, k2 = math.floor(n / 262144) % 64, math.floor(n / 4096) % 64
    local k3, k4 = math.floor(n / 64) % 64, n % 64
    out[#out + 1] = string.sub(B64, k1 + 1, k1 + 1) .. string.sub(B64, k2 + 1, k2 + 1) ..
      (b and string.sub(B64, k3 + 1, k3 + 1) or '=') .. (c and string.sub(B64, k4 + 1, k4 + 1) or '=')
  end
  return table.concat(out)
end

-- The job fields a claim needs, checked; returns what is wrong ('' when nothing).
local function malformed(f)
  local bad = {}
  local function need(label, v, numeric)
    if not v or (numeric and not tonumber(v)) then bad[#bad + 1] = label end
  end
  need('task', f.t); need('data', f.d); need('queue', f.q)
  need('created_at', f.c, true); need('attempts', f.a, true); need('max_attempts', f.m, true)
  if f.to and f.to ~= '' and not tonumber(f.to) then bad[#bad + 1] = 'timeout' end
  if f.l and f.l ~= '' and not tonumber(f.l) then bad[#bad + 1] = 'lease' end
  if #bad == 0 then return '' end
  return 'missing or malformed field(s) ' .. table.concat(bad, ', ')
end

-- fields: the names whose bytes go into the error (empty: every field of the record).
local function quarantine(id, reason, fields)
  local jk = QK .. 'j:' .. id
  local h = redis.call('HGETALL', jk)
  if #h == 0 then return false end
  local rec = {}
  for i = 1, #h, 2 do rec[h[i]] = h[i + 1] end
  if #fields == 0 then
    fields = {'t', 'q', 'd', 'p', 'm', 'to', 'l', 'c', 'r', 's', 'a', 'k', 'rk', 'w', 'tk',
      'st', 'x', 'f', 'pg', 'res', 'e', 'lg', 'ls', 'ld', 'cx', 'sl', 'ms'}  -- every field a job record can have
  end
  local names = labels()
  local raw, size = {}, {}
  for _, name in ipairs(fields) do
    local v = rec[name]
    if v then
      local label = names[name] or name
      raw[label] = b64(string.sub(v, 1, RAW_CAP)); size[label] = #v
    end
  end
  local previous = cjson.null
  if rec.e then
    local ok, val = pcall(cjson.decode, rec.e)
    if ok then previous = val end
  end
  local queue = string.sub(QK, #P + 3, -3)
  local err = cjson.encode({type = 'Quarantined', raw = raw, raw_size = size,
    previous = previous, traceback = '',
    message = 'record could not be decoded: ' .. reason .. ". It was quarantined as failed; " ..
      "the raw bytes are in error['raw'] (base64, the first " .. RAW_CAP ..
      " bytes of each field)"})
  if rec.rk then redis.call('ZREM', QK .. 'ready', rec.rk) end
  redis.call('ZREM', QK .. 'sched', id)
  redis.call('ZREM', QK .. 'active', id)
  for _, st in ipairs({'queued', 'active', 'completed', 'failed', 'cancelled'}) do
    redis.call('ZREM', QK .. 'i:' .. st, id)
    redis.call('ZREM', QK .. 'f:' .. st, id)
  end
  local c = tonumber(rec.c) and rec.c or NOWS
  local fix = {'s', 'failed', 'f', NOWS, 'e', err, 'c', c, 'q', queue, 't', rec.t or '?'}
  if not tonumber(rec.r) then fix[#fix + 1] = 'r'; fix[#fix + 1] = c end
  if not tonumber(rec.a) then fix[#fix + 1] = 'a'; fix[#fix + 1] = 0 end
  if not tonumber(rec.m) then fix[#fix + 1] = 'm'; fix[#fix + 1] = 1 end
  if not tonumber(rec.p) then fix[#fix + 1] = 'p'; fix[#fix + 1] = 0 end
  if rec.sl and not tonumber(rec.sl) then fix[#fix + 1] = 'sl'; fix[#fix + 1] = 0 end
  if rec.ms and not tonumber(rec.ms) then fix[#fix + 1] = 'ms'; fix[#fix + 1] = 3 end
  if not rec.d then fix[#fix + 1] = 'd'; fix[#fix + 1] = 'null' end
  redis.call('HSET', jk, unpack(fix))
  redis.call('HDEL', jk, 'tk', 'x', 'rk', 'cx')
  for _, name in ipairs({'pg', 'res', 'lg', 'to', 'l'}) do
    local v = rec[name]
    if v and v ~= '' and not pcall(cjson.decode, v) then redis.call('HDEL', jk, name) end
  end
  redis.call('ZADD', QK .. 'all', c, id)
  redis.call('ZADD', QK .. 'i:failed', c, id)
  redis.call('ZADD', QK .. 'f:failed', NOWS, id)
  if rec.k and redis.call('HGET', QK .. 'dedup', rec.k) == id then
    redis.call('HDEL', QK .. 'dedup', rec.k)
  end
  event('job.failed', id, rec.t or '?', queue, '{"error":' .. err .. '}')
  notify_finished({id})
  return record(id)
end

-- Replay: a call the client may send twice (its connection dropped before the reply) names
-- KEYS[2] = '<slot>:call:<id>'. Its first run marks that key for CALL_TTL ms (and records
-- the reply there when a replay could not rebuild it); a second run with the same id
-- returns the first run's reply instead of applying the change again (wire.py, Wire.call).
local CALL = KEYS[2]
local CALL_TTL = 60000

-- A claim's replay hands back the jobs that still hold this claim's tokens (ARGV[7] .. i);
-- its idle hint says 'due', so the worker simply claims again next.
local function claim_again()
  local base, lease = ARGV[7], tonumber(ARGV[6])
  local out = {}
  for _, id in ipairs(redis.call('ZRANGE', QK .. 'active', 0, -1)) do
    local f = redis.call('HMGET', QK .. 'j:' .. id, 's', 'tk', 't', 'd', 'a', 'm', 'to', 'l', 'c',
      'sl')
    if f[1] == 'active' and f[2] and string.sub(f[2], 1, #base) == base then
      local span = lease
      if f[8] and f[8] ~= '' then span = tonumber(f[8]) end
      local n = #out
      out[n + 1] = id; out[n + 2] = f[2]; out[n + 3] = f[3]; out[n + 4] = f[4]
      out[n + 5] = tonumber(f[5]); out[n + 6] = f[6]; out[n + 7] = f[7]
      out[n + 8] = tostring(span); out[n + 9] = f[9]; out[n + 10] = f[10] or '0'
    end
  end
  return {out, {0, 1, ''}}
end

-- A finish that applied every item needs no record: its replay answers 1 for each.
local function finish_kept(reply)
  for _, v in ipairs(reply) do
    if v ~= 1 then return reply end
  end
  return nil
end

local function finish_again()
  local out = {}
  -- Items start after the two log caps, the follow-ups' place ('': a finish with
  -- follow-ups keeps its reply, a table of two tables, so never comes here), the steps'
  -- events' place and the runs' ends' place, and end where those events or ends start (an
  -- end written answers 3 or 7, so its reply is kept; 1 is an end that found its marker).
  for i = 9, (tonumber(ARGV[7]) or tonumber(ARGV[8]) or #ARGV + 1) - 1, 8 do
    out[#out + 1] = 1
  end
  return out
end

-- Per script: what its record keeps of a reply (nil: the mark alone), and how a replay
-- answers from the mark alone. Other scripts record their whole reply.
local KEPT = {claim = function() return nil end, finish = finish_kept}
local AGAIN = {claim = claim_again, finish = finish_again}

-- Runs a script's body once per call id (each script is loaded as 'return once(NAME, body)').
local function once(name, body)
  if not CALL then return body() end
  if not redis.call('SET', CALL, '', 'NX', 'PX', CALL_TTL) then
    local prior = redis.call('GET', CALL)
    if prior and prior ~= '' then return cmsgpack.unpack(prior) end
    if AGAIN[name] then return AGAIN[name]() end
  end
  local reply = body()
  local keep = reply
  if KEPT[name] then keep = KEPT[name](reply) end
  if keep ~= nil or not KEPT[name] then
    redis.call('SET', CALL, cmsgpack.pack(keep), 'PX', CALL_TTL)
  end
  return reply
end
