-- Job counts per state, the same numbers as BullMQ's getJobCounts.
-- ARGV: key suffixes ("wait", "paused", "active", "delayed", "prioritized", "completed",
-- "failed", "waiting-children"). Returns one count per argument.
local out = {}
for i = 1, #ARGV do
  local k = P .. ARGV[i]
  if ARGV[i] == "wait" or ARGV[i] == "paused" or ARGV[i] == "active" then
    local n = rcall("LLEN", k)
    -- a BullMQ 4 marker at the head of a waiting list is not a job
    if n > 0 and ARGV[i] ~= "active" then
      local head = rcall("LINDEX", k, -1)
      if string.sub(head, 1, 2) == "0:" then n = n - 1 end
    end
    out[#out + 1] = n
  else
    out[#out + 1] = rcall("ZCARD", k)
  end
end
return out
