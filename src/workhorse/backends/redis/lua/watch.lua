-- fetch.lua's mode '2' (ARGV[4]), then ids: the finished jobs, as {id, public state,
-- fields}, and the others watched (their finish is then published whole, see
-- notify_finished).
local out = {}
for i = 5, #ARGV do
  local rec = record(ARGV[i])
  if rec then
    local s = rec[2]
    if s == 'completed' or s == 'failed' or s == 'cancelled' then
      out[#out + 1] = rec
    else
      redis.call('SADD', QK .. 'watch', ARGV[i])
    end
  end
end
return out
