-- Appends a line to a job's log. ARGV: 1 job id, 2 line, 3 lines to keep (0: all).
-- Returns the log's length, or -1 if the job is gone.
local k = P .. ARGV[1]
if rcall("EXISTS", k) == 0 then return -1 end
local n = rcall("RPUSH", k .. ":logs", ARGV[2])
local keep = tonumber(ARGV[3])
if keep > 0 then
  rcall("LTRIM", k .. ":logs", -keep, -1)
  if n > keep then n = keep end
end
return n
