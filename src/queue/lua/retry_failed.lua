-- Moves up to ARGV[1] jobs that finished in ARGV[3] ("failed" or "completed") at or before
-- ARGV[2] (ms) back to `wait`, as BullMQ's retryJobs does. Returns how many moved.
local state = ARGV[3]
local ids = rcall("ZRANGEBYSCORE", P .. state, 0, ARGV[2], "LIMIT", 0, tonumber(ARGV[1]))
if #ids == 0 then return 0 end
local result_field = state == "failed" and "failedReason" or "returnvalue"
local stopped, paused = queue_state()
local target = wait_list(paused)
for i = 1, #ids, 5000 do
  local chunk = {unpack(ids, i, math.min(i + 4999, #ids))}
  rcall("ZREM", P .. state, unpack(chunk))
  rcall("LPUSH", target, unpack(chunk))
end
for _, id in ipairs(ids) do
  rcall("HDEL", P .. id, "finishedOn", "processedOn", result_field)
  emit("waiting", "jobId", id, "prev", state)
end
ready_marker(stopped)
return #ids
