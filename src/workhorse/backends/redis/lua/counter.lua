-- ARGV[4], [5], [6]: a counter's key, n and ttl milliseconds ('' = none), then the same for
-- each further counter, added in order (add_counters, _prelude.lua). Returns their new
-- values.
return add_counters(4, #ARGV)
