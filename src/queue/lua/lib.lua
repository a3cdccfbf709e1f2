-- Helpers shared by the queue scripts (see conn.c): loaded once with them as a Redis function
-- library, or prepended to each script for EVALSHA. Every script starts with begin(KEYS).
-- KEYS[1] is the queue's key prefix, "bull:<queue>:"; job keys are built from it, as BullMQ's
-- own scripts do. Callers pass the time: no script reads the server clock.
local rcall, P
local meta_cached -- meta(), read once per call
local promoted    -- fetch(): delayed jobs promoted in this call

local function begin(keys)
  rcall = redis.call
  P = keys[1]
  meta_cached, promoted = nil, nil
end

-- Numbers on the hot paths are passed to rcall as strings: Redis formats a Lua number with
-- printf, which costs more than the command it is an argument of.

-- The queue's settings in meta: paused, concurrency, max, duration (the global rate limit),
-- opts.maxLenEvents. Read once per call of a script: a script that writes one of them does so
-- before its first read.
local function meta()
  if not meta_cached then
    meta_cached = rcall("HMGET", P .. "meta", "paused", "concurrency", "max", "duration",
                        "opts.maxLenEvents")
  end
  return meta_cached
end

local function emit(...)
  local m = meta()
  if not m[5] then
    m[5] = "10000"
    rcall("HSET", P .. "meta", "opts.maxLenEvents", m[5])
  end
  rcall("XADD", P .. "events", "MAXLEN", "~", m[5], "*", "event", ...)
end

-- stopped: no fetching (paused, or at the global concurrency cap); paused: meta.paused exists;
-- then the global rate limit (max jobs per duration ms), if any.
local function queue_state()
  local m = meta()
  local paused = m[1] ~= false
  local stopped = paused
  if not stopped and m[2] then
    stopped = rcall("LLEN", P .. "active") >= tonumber(m[2])
  end
  return stopped, paused, tonumber(m[3]), tonumber(m[4])
end

local function ready_marker(stopped)
  if not stopped then rcall("ZADD", P .. "marker", "0", "0") end
end

local function next_delayed()
  local r = rcall("ZRANGE", P .. "delayed", "0", "0", "WITHSCORES")
  if r[2] then return tonumber(r[2]) / 0x1000 end
  return nil
end

local function delay_marker()
  local t = next_delayed()
  if t then rcall("ZADD", P .. "marker", t, "1") end
end

local function priority_score(priority)
  local n = rcall("INCR", P .. "pc")
  return priority * 0x100000000 + n % 0x100000000
end

-- Score of a job due at `due` ms: due * 4096 plus a sequence that keeps insertion order within
-- one millisecond.
local function delayed_score(due)
  local lo = due * 0x1000
  local hi = (due + 1) * 0x1000 - 1
  local r = rcall("ZREVRANGEBYSCORE", P .. "delayed", hi, lo, "WITHSCORES", "LIMIT", 0, 1)
  if r[2] then
    local s = tonumber(r[2])
    if s >= hi then return hi end
    return s + 1
  end
  return lo
end

-- Plain jobs go to `wait`, except while a BullMQ 5 pause holds the queue's jobs in `paused`: a
-- v5 resume renames `paused` over `wait` and would drop what we pushed there.
local function wait_list(paused)
  if paused and rcall("EXISTS", P .. "paused") == 1 then return P .. "paused" end
  return P .. "wait"
end

local function enqueue(id, priority, lifo, stopped, paused)
  if priority > 0 then
    rcall("ZADD", P .. "prioritized", priority_score(priority), id)
  else
    rcall(lifo and "RPUSH" or "LPUSH", wait_list(paused), id)
  end
  ready_marker(stopped)
end

local function promote_delayed(now, stopped, paused)
  local ids = rcall("ZRANGEBYSCORE", P .. "delayed", "0", (now + 1) * 0x1000 - 1, "LIMIT", "0",
                    "1000")
  if #ids == 0 then return end
  rcall("ZREM", P .. "delayed", unpack(ids))
  for _, id in ipairs(ids) do
    local priority = tonumber(rcall("HGET", P .. id, "priority")) or 0
    enqueue(id, priority, false, true, paused)
    emit("waiting", "jobId", id, "prev", "delayed")
    rcall("HSET", P .. id, "delay", 0)
  end
  ready_marker(stopped)
end

local function remove_job(id)
  local k = P .. id
  rcall("DEL", k, k .. ":logs", k .. ":lock", k .. ":dependencies", k .. ":processed",
        k .. ":failed", k .. ":unsuccessful")
end

-- A job as the worker reads it (worker.c, enum job_field): {id, name, data, opts, defa, atm,
-- ats, stc, priority, timestamp, processedOn}, with false for a field the hash lacks. The second
-- result tells whether the hash has any of them: a job's always does.
local function job_reply(id)
  local f = rcall("HMGET", P .. id, "name", "data", "opts", "defa", "atm", "ats", "stc",
                  "priority", "timestamp", "processedOn")
  table.insert(f, 1, id)
  for i = 2, 11 do
    if f[i] then return f, true end
  end
  return f, false
end

-- Moves the next job to `active` under our lock. Returns job_reply or, when there is
-- nothing to do, {false, next delayed due time or 0, rate-limit ttl or 0}. now is the caller's
-- ARGV text. Delayed jobs are promoted by the first fetch of a script's call only: within one
-- call the clock does not move. The caller wakes other workers (wake_if_more) once it is done.
local function fetch(now, token, lock_ms, worker_name)
  local stopped, paused, rate_max, rate_ms = queue_state()
  if not promoted then
    promote_delayed(tonumber(now), stopped, paused)
    promoted = true
  end
  if rate_max then
    local used = tonumber(rcall("GET", P .. "limiter")) or 0
    if used >= rate_max then
      local ttl = rcall("PTTL", P .. "limiter")
      if ttl > 0 then return {false, 0, ttl} end
    end
  end
  if stopped then return {false, 0, 0} end
  local id, f
  while true do
    id = rcall("RPOPLPUSH", P .. "wait", P .. "active")
    if not id then
      local r = rcall("ZPOPMIN", P .. "prioritized")
      if r[1] then
        id = r[1]
        rcall("LPUSH", P .. "active", id)
      else
        rcall("DEL", P .. "pc")
      end
    end
    if not id then return {false, next_delayed() or 0, 0} end
    -- skip BullMQ 4 markers and ids whose job hash is gone
    if string.sub(id, 1, 2) ~= "0:" then
      local found
      f, found = job_reply(id)
      if found then break end
    end
    rcall("LREM", P .. "active", "-1", id)
  end
  if rate_max then
    if rcall("INCR", P .. "limiter") == 1 then rcall("PEXPIRE", P .. "limiter", rate_ms) end
  end
  local k = P .. id
  rcall("SET", k .. ":lock", token, "PX", lock_ms)
  -- the fields were read before these writes: the reply gets them too
  local ats = tostring((tonumber(f[7]) or 0) + 1)
  f[7], f[11] = ats, now
  if worker_name ~= "" then
    rcall("HSET", k, "processedOn", now, "ats", ats, "pb", worker_name)
  else
    rcall("HSET", k, "processedOn", now, "ats", ats)
  end
  emit("active", "jobId", id, "prev", "waiting")
  return f
end

-- Wakes the next blocked worker after a fetch took a job, only when there is more for it.
local function wake_if_more()
  if rcall("LLEN", P .. "wait") > 0 or rcall("ZCARD", P .. "prioritized") > 0 then
    ready_marker(false)
  end
end

-- After a reply was lost (the connection dropped, or Redis restarted between running a script
-- and answering), finds the job that the earlier call took under `token`: its job_reply, or nil.
-- A scan of `active`, paid only on that rare path; tokens are unique, so a match is ours.
local function recover(token)
  for _, id in ipairs(rcall("LRANGE", P .. "active", 0, -1)) do
    if rcall("GET", P .. id .. ":lock") == token then
      return (job_reply(id))
    end
  end
  return nil
end

-- Lock check before a transition out of `active`: 0, -2 (no lock) or -6 (another token).
local function take_lock(id, token)
  local k = P .. id .. ":lock"
  local held = rcall("GET", k)
  if not held then return -2 end
  if held ~= token then return -6 end
  rcall("DEL", k)
  rcall("SREM", P .. "stalled", id)
  return 0
end
