-- ARGV[4] mode: '0' every job found, '1' finished jobs only, '2' finished jobs only and
-- watch the others (their finish is then published whole, see notify_finished); then ids.
-- Returns {id, public state, fields} per job.
local mode = ARGV[4]
local out = {}
for i = 5, #ARGV do
  local rec = record(ARGV[i])
  if rec then
    local s = rec[2]
    if mode == '0' or s == 'completed' or s == 'failed' or s == 'cancelled' then
      out[#out + 1] = rec
    elseif mode == '2' then
      redis.call('SADD', QK .. 'watch', ARGV[i])
    end
  end
end
return out
