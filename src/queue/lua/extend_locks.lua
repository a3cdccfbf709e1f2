-- Renews the locks of every job a worker has in flight, in one call per tick.
-- ARGV: 1 lock duration (ms), then id, token, id, token, ...
-- Returns the ids whose lock is gone or held by someone else: those jobs are no longer ours.
local lost = {}
for i = 2, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local lock = P .. id .. ":lock"
  if rcall("GET", lock) == token then
    rcall("SET", lock, token, "PX", ARGV[1])
    rcall("SREM", P .. "stalled", id)
  else
    lost[#lost + 1] = id
  end
end
return lost
