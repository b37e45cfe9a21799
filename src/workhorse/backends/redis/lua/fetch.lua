-- ARGV[4] mode: '0' every job found, '1' finished jobs only; then ids. Returns {id, public
-- state, fields} per job. Reads only (watch.lua is the read that watches).
local mode = ARGV[4]
local out = {}
for i = 5, #ARGV do
  local rec = record(ARGV[i])
  if rec then
    local s = rec[2]
    if mode == '0' or s == 'completed' or s == 'failed' or s == 'cancelled' then
      out[#out + 1] = rec
    end
  end
end
return out
