-- Hands jobs this worker still holds back to the head of `wait` at shutdown, so that they run
-- again at once instead of after their locks expire. ARGV: id, token, id, token, ...
-- Returns the ids handed back.
local out = {}
local stopped, paused = queue_state()
for i = 1, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  if rcall("EXISTS", P .. id) == 1 and take_lock(id, token) == 0 and
     rcall("LREM", P .. "active", -1, id) > 0 then
    local priority = tonumber(rcall("HGET", P .. id, "priority")) or 0
    if priority > 0 then
      rcall("ZADD", P .. "prioritized", priority_score(priority), id)
    else
      rcall("RPUSH", wait_list(paused), id)
    end
    emit("waiting", "jobId", id, "prev", "active")
    out[#out + 1] = id
  end
end
if #out > 0 then ready_marker(stopped) end
return out
