-- Per event: type job task queue data-JSON at ('' = now).
for i = 4, #ARGV, 6 do
  local at = ARGV[i + 5]
  if at == '' then at = nil end
  event(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], at)
end
return 1
