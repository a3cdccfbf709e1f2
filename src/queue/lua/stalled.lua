-- The stalled check, run by every worker each interval but done by one per interval across
-- the fleet (the stalled-check mutex). Jobs that were active at the previous check and have no
-- lock now lost their worker: they go back to the head of `wait`, and past the stall limit they
-- carry a deferred failure that the next fetch applies without running them.
-- ARGV: 1 now (ms), 2 max stalled count, 3 interval (ms). Returns the ids moved back.
if not rcall("SET", P .. "stalled-check", ARGV[1], "NX", "PX", ARGV[3]) then return {} end
local max_stalled = tonumber(ARGV[2])
local moved = {}
local stopped, paused = queue_state()
for _, id in ipairs(rcall("SMEMBERS", P .. "stalled")) do
  if string.sub(id, 1, 2) == "0:" then
    rcall("LREM", P .. "active", 1, id)
  elseif rcall("EXISTS", P .. id .. ":lock") == 0 and rcall("LREM", P .. "active", 1, id) > 0 then
    local k = P .. id
    if rcall("HINCRBY", k, "stc", 1) > max_stalled then
      rcall("HSET", k, "defa", "job stalled more than allowable limit")
    end
    rcall("RPUSH", wait_list(paused), id)
    emit("waiting", "jobId", id, "prev", "active")
    emit("stalled", "jobId", id)
    moved[#moved + 1] = id
  end
end
if #moved > 0 then ready_marker(stopped) end
rcall("DEL", P .. "stalled")
local active = rcall("LRANGE", P .. "active", 0, -1)
for i = 1, #active, 5000 do
  rcall("SADD", P .. "stalled", unpack(active, i, math.min(i + 4999, #active)))
end
return moved
