-- Takes the next job (moveToActive). ARGV: 1 now (ms), 2 lock token, 3 lock duration (ms),
-- 4 worker name ("" for none), 5 "1" when this call repeats one whose reply never came: the
-- job that call may have taken under the same token is handed over instead of a second one.
-- Returns fetch()'s result (lib.lua).
if ARGV[5] == "1" then
  local job = recover(ARGV[2])
  if job then return job end
end
local job = fetch(ARGV[1], ARGV[2], ARGV[3], ARGV[4])
if job[1] then wake_if_more() end
return job
