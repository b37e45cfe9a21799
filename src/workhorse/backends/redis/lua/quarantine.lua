-- ARGV[4] id, ARGV[5] what did not decode, ARGV[6...] the fields whose bytes the error keeps
-- (none: all). The client found the record undecodable: it ends failed (see quarantine in
-- _prelude.lua). Returns {id, public state, fields} after, or false when it is gone.
local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
return quarantine(ARGV[4], ARGV[5], fields)
