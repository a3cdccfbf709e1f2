-- Deletes jobs in one state that are older than a cutoff, as BullMQ's Queue.clean does.
-- ARGV: 1 state ("completed", "failed", "delayed", "prioritized", "wait", "paused"), 2 cutoff
-- (ms: finishedOn for finished jobs, else timestamp), 3 limit (0: none).
-- Returns the ids deleted, and emits `cleaned` with their count.
local state, cutoff, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local k = P .. state
local deleted = {}
local function full() return limit > 0 and #deleted >= limit end
if state == "completed" or state == "failed" then
  local args = {"ZRANGEBYSCORE", k, 0, cutoff}
  if limit > 0 then args = {"ZRANGEBYSCORE", k, 0, cutoff, "LIMIT", 0, limit} end
  deleted = rcall(unpack(args))
elseif state == "delayed" or state == "prioritized" then
  for _, id in ipairs(rcall("ZRANGE", k, 0, -1)) do
    if full() then break end
    local ts = tonumber(rcall("HGET", P .. id, "timestamp"))
    if not ts or ts <= cutoff then deleted[#deleted + 1] = id end
  end
elseif state == "wait" or state == "paused" then
  -- from the head (oldest) on
  local ids = rcall("LRANGE", k, 0, -1)
  for i = #ids, 1, -1 do
    if full() then break end
    local ts = tonumber(rcall("HGET", P .. ids[i], "timestamp"))
    if not ts or ts <= cutoff then deleted[#deleted + 1] = ids[i] end
  end
else
  return redis.error_reply("cannot clean state " .. state)
end
for i = 1, #deleted, 5000 do
  local chunk = {unpack(deleted, i, math.min(i + 4999, #deleted))}
  if state == "wait" or state == "paused" then
    for _, id in ipairs(chunk) do rcall("LREM", k, 0, id) end
  else
    rcall("ZREM", k, unpack(chunk))
  end
end
for _, id in ipairs(deleted) do remove_job(id) end
emit("cleaned", "count", #deleted)
return deleted
