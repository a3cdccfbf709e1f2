-- Puts a failed attempt back for another try. ARGV: 1 job id, 2 lock token, 3 now (ms),
-- 4 backoff delay (ms; 0: straight back to `wait`), 5 failedReason, 6 stacktrace (JSON),
-- 7 "1" if the job is lifo, 8 "1" when this call repeats one whose reply never came, 9 the
-- attempts made (atm) once this retry is recorded.
-- Returns 0 (1 when a repeated call found the retry recorded by the call it repeats), or
-- -1 / -2 / -6 / -3 as finish does.
local id, token, now, delay = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local k = P .. id
if rcall("EXISTS", k) == 0 then return -1 end
local code = take_lock(id, token)
if code < 0 then
  -- the first run counted the attempt and let the lock go: it is recorded already
  if ARGV[8] == "1" and (tonumber(rcall("HGET", k, "atm")) or 0) >= tonumber(ARGV[9]) then
    return 1
  end
  return code
end
rcall("HSET", k, "failedReason", ARGV[5], "stacktrace", ARGV[6])
if rcall("LREM", P .. "active", -1, id) == 0 then return -3 end
rcall("HINCRBY", k, "atm", 1)
if delay > 0 then
  local due = now + delay
  rcall("HSET", k, "delay", delay)
  rcall("ZADD", P .. "delayed", delayed_score(due), id)
  emit("delayed", "jobId", id, "delay", due)
  delay_marker()
else
  local stopped, paused = queue_state()
  local priority = tonumber(rcall("HGET", k, "priority")) or 0
  enqueue(id, priority, ARGV[7] == "1", stopped, paused)
  emit("waiting", "jobId", id, "prev", "active")
end
return 0
