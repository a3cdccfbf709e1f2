-- Finishes jobs (moveToFinished) and, for each, optionally takes the next one in the same call.
-- Several workers' slots finishing at once share one call. ARGV: 1 the number of jobs, 2 now
-- (ms), 3 lock duration (ms) and 4 worker name for the jobs taken, 5 "1" to take a next job for
-- each, 6 "1" when this call repeats one whose reply never came (the same arguments, `now`
-- included); then for each job, in order, the 10 arguments:
--   1 job id, 2 lock token, 3 "completed" or "failed", 4 returnvalue (JSON) or failedReason,
--   5 stacktrace (JSON, failed only), 6 keep count (-1 all, 0 none, N newest), 7 keep age (s,
--   -1 none), 8 the job's attempts, 9 the token for its next job, 10 attempts made with this
--   one (the job's atm when it was fetched, plus one: nobody else writes it while we hold the
--   lock).
-- Returns one reply per job, in order: {code} with code -1 (no job), -2 (no lock), -6 (another
-- lock) or -3 (not active), or {0, fetch() result} (a job, or when to look again) / {0} on
-- success, with 1 instead of 0 when a repeated call found the outcome recorded by the call it
-- repeats.
local now, lock_ms, worker_name = ARGV[2], ARGV[3], ARGV[4]
local take_next, repeated = ARGV[5] == "1", ARGV[6] == "1"

-- A repeated call whose first run took effect must not be refused as if another worker owned
-- the job: only the fetch of the next job is left, and that job may already be ours under the
-- next token. b is the job's offset in ARGV.
local function done_before(b)
  if not take_next then return {1} end
  return {1, recover(ARGV[b + 9]) or fetch(now, ARGV[b + 9], lock_ms, worker_name)}
end

-- Finishes the job whose arguments follow offset b in ARGV (ARGV[b + 1] is its id).
local function finish(b)
  local id, token, target = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local k = P .. id

  local code = take_lock(id, token)
  if code < 0 then
    if rcall("EXISTS", k) == 0 then
      -- gone: the first run removed it (removeOnComplete/removeOnFail true)
      if repeated and ARGV[b + 6] == "0" then return done_before(b) end
      return {-1}
    end
    -- finishedOn is the exact `now` of this call, and the job left `active`: the first run did it
    if repeated and rcall("HGET", k, "finishedOn") == now and
       not rcall("LPOS", P .. "active", id) then
      return done_before(b)
    end
    return {code}
  end
  if rcall("LREM", P .. "active", "-1", id) == 0 then return {-3} end
  local attempts_made = ARGV[b + 10]
  local keep_count, keep_age = tonumber(ARGV[b + 6]), tonumber(ARGV[b + 7])
  local field = target == "completed" and "returnvalue" or "failedReason"
  if keep_count ~= 0 then
    local set = P .. target
    rcall("ZADD", set, now, id)
    if target == "failed" then
      rcall("HSET", k, field, ARGV[b + 4], "stacktrace", ARGV[b + 5], "finishedOn", now,
            "atm", attempts_made)
      rcall("HDEL", k, "defa")
    else
      rcall("HSET", k, field, ARGV[b + 4], "finishedOn", now, "atm", attempts_made)
    end
    if keep_age >= 0 then
      local cutoff = tonumber(now) - keep_age * 1000
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
  emit(target, "jobId", id, field, ARGV[b + 4], "prev", "active")
  if target == "failed" and tonumber(attempts_made) >= tonumber(ARGV[b + 8]) then
    emit("retries-exhausted", "jobId", id, "attemptsMade", attempts_made)
  end
  if take_next then return {0, fetch(now, ARGV[b + 9], lock_ms, worker_name)} end
  return {0}
end

local out, took, empty = {}, false, false
for i = 1, tonumber(ARGV[1]) do
  local r = finish(6 + (i - 1) * 10)
  if r[2] and r[2][1] then
    took = true
  elseif r[1] == 0 then
    empty = true -- a job left and none was taken
  end
  out[i] = r
end
if took then wake_if_more() end
if empty and rcall("LLEN", P .. "wait") == 0 and rcall("LLEN", P .. "active") == 0 and
   rcall("ZCARD", P .. "prioritized") == 0 then
  emit("drained")
end
return out
