-- ARGV[4] a job id. Its events still in the queue's stream, oldest first, as
-- {entry id, fields} pairs, read by the ids its record keeps ('ev', see event()): no walk
-- of the stream. An id the stream has trimmed is skipped. Reads only.
local ev = redis.call('HGET', QK .. 'j:' .. ARGV[4], 'ev')
local out = {}
if not ev then return out end
local stream = QK .. 'events'
for eid in string.gmatch(ev, '%S+') do
  local found = redis.call('XRANGE', stream, eid, eid)
  if found[1] then out[#out + 1] = found[1] end
end
return out
