-- Per lease: id token lease_seconds. Returns per lease 0 (lost), 1 (renewed), 2 (renewed,
-- but a cancel was requested). A renew also takes up a lease handed over untaken.
local out = {}
for i = 4, #ARGV, 3 do
  local id = ARGV[i]
  local jk = QK .. 'j:' .. id
  local f = redis.call('HMGET', jk, 's', 'tk', 'cx', 'wk')
  if f[1] ~= 'active' or f[2] ~= ARGV[i + 1] then
    out[#out + 1] = 0
  else
    if f[4] then redis.call('HDEL', jk, 'wk') end  -- taken up (see claim.lua's handover)
    local exp = NOW + tonumber(ARGV[i + 2])
    redis.call('HSET', jk, 'x', fmt(exp))
    redis.call('ZADD', QK .. 'active', exp, id)
    if f[3] then out[#out + 1] = 2 else out[#out + 1] = 1 end
  end
end
return out
