-- Finishes a job (moveToFinished) and, optionally, takes the next one in the same call.
-- ARGV: 1 job id, 2 lock token, 3 now (ms), 4 "completed" or "failed", 5 returnvalue (JSON) or
-- failedReason, 6 stacktrace (JSON, failed only), 7 keep count (-1 all, 0 none, N newest),
-- 8 keep age (s, -1 none), 9 the job's attempts, 10 "1" to fetch next, 11 next token,
-- 12 lock duration (ms), 13 worker name, 14 "1" when this call repeats one whose reply never
-- came (the same arguments, `now` included).
-- Returns {code} with code -1 (no job), -2 (no lock), -6 (another lock) or -3 (not active),
-- or {0, fetch() result} (a job, or when to look again) / {0} on success, with 1 instead of 0
-- when a repeated call found the outcome recorded by the call it repeats.
local id, token, now, target = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local k = P .. id

-- A repeated call whose first run took effect must not be refused as if another worker owned
-- the job: only the fetch of the next job is left, and that job may already be ours under the
-- next token.
local function done_before()
  if ARGV[10] ~= "1" then return {1} end
  return {1, recover(ARGV[11]) or fetch(now, ARGV[11], ARGV[12], ARGV[13])}
end
local repeated = ARGV[14] == "1"

if rcall("EXISTS", k) == 0 then
  -- gone: the first run removed it (removeOnComplete/removeOnFail true)
  if repeated and ARGV[7] == "0" then return done_before() end
  return {-1}
end
local code = take_lock(id, token)
if code < 0 then
  -- finishedOn is the exact `now` of this call, and the job left `active`: the first run did it
  if repeated and rcall("HGET", k, "finishedOn") == ARGV[3] and
     not rcall("LPOS", P .. "active", id) then
    return done_before()
  end
  return {code}
end
if rcall("LREM", P .. "active", -1, id) == 0 then return {-3} end
local attempts_made = rcall("HINCRBY", k, "atm", 1)
local keep_count, keep_age = tonumber(ARGV[7]), tonumber(ARGV[8])
local field = target == "completed" and "returnvalue" or "failedReason"
if keep_count ~= 0 then
  local set = P .. target
  rcall("ZADD", set, now, id)
  if target == "failed" then
    rcall("HSET", k, field, ARGV[5], "stacktrace", ARGV[6], "finishedOn", now)
    rcall("HDEL", k, "defa")
  else
    rcall("HSET", k, field, ARGV[5], "finishedOn", now)
  end
  if keep_age >= 0 then
    local cutoff = now - keep_age * 1000
    local old = rcall("ZREVRANGEBYSCORE", set, cutoff, "-inf", "LIMIT", 0, 1000)
    for _, old_id in ipairs(old) do remove_job(old_id) end
    if #old > 0 then rcall("ZREM", set, unpack(old)) end
  end
  if keep_count > 0 then
    local old = rcall("ZREVRANGE", set, keep_count, -1)
    for _, old_id in ipairs(old) do remove_job(old_id) end
    if #old > 0 then rcall("ZREMRANGEBYRANK", set, 0, -(keep_count + 1)) end
  end
else
  remove_job(id)
end
emit(target, "jobId", id, field, ARGV[5], "prev", "active")
if target == "failed" and attempts_made >= tonumber(ARGV[9]) then
  emit("retries-exhausted", "jobId", id, "attemptsMade", attempts_made)
end
local next_job
if ARGV[10] == "1" then
  next_job = fetch(now, ARGV[11], ARGV[12], ARGV[13])
  if next_job[1] then return {0, next_job} end
end
if rcall("LLEN", P .. "wait") == 0 and rcall("LLEN", P .. "active") == 0 and
   rcall("ZCARD", P .. "prioritized") == 0 then
  emit("drained")
end
-- with nothing fetched, {false, next due time, rate-limit ttl} tells the worker when to look
return {0, next_job}
