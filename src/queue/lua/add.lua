-- Adds one job (standard, delayed or prioritized).
-- ARGV: 1 custom id or "", 2 name, 3 data (JSON), 4 opts (JSON), 5 timestamp ms, 6 delay ms,
--       7 priority, 8 "1" for lifo.
-- Returns {id, 0}, or {id, 1} when the custom id exists (nothing added, `duplicated` emitted).
local id = ARGV[1]
if id == "" then
  id = tostring(rcall("INCR", P .. "id"))
elseif rcall("EXISTS", P .. id) == 1 then
  emit("duplicated", "jobId", id)
  return {id, 1}
end
local timestamp = tonumber(ARGV[5])
local delay = tonumber(ARGV[6])
local priority = tonumber(ARGV[7])
local k = P .. id
rcall("HSET", k, "name", ARGV[2], "data", ARGV[3], "opts", ARGV[4], "timestamp", ARGV[5],
      "delay", ARGV[6], "priority", ARGV[7])
emit("added", "jobId", id, "name", ARGV[2])
if delay > 0 then
  local due = timestamp + delay
  rcall("ZADD", P .. "delayed", delayed_score(due), id)
  emit("delayed", "jobId", id, "delay", due)
  delay_marker()
else
  local stopped, paused = queue_state()
  enqueue(id, priority, ARGV[8] == "1", stopped, paused)
  emit("waiting", "jobId", id)
end
return {id, 0}
