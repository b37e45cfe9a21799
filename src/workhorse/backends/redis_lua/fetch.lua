-- ARGV[4] '1' to return finished jobs only; then ids. Returns {id, public state, fields}
-- per job found.
local only_finished = ARGV[4] == '1'
local out = {}
for i = 5, #ARGV do
  local rec = record(ARGV[i])
  if rec then
    local s = rec[2]
    if not only_finished or s == 'completed' or s == 'failed' or s == 'cancelled' then
      out[#out + 1] = rec
    end
  end
end
return out
