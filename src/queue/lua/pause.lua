-- Pauses or resumes the queue. ARGV[1]: "paused" or "resumed".
-- A pause only sets meta.paused (BullMQ 6): jobs stay in `wait` and fetches stop. A resume also
-- moves a `paused` list left by a BullMQ 5 pause back into `wait`, oldest at the head.
if ARGV[1] == "paused" then
  rcall("HSET", P .. "meta", "paused", 1)
  rcall("DEL", P .. "marker")
else
  rcall("HDEL", P .. "meta", "paused")
  if rcall("EXISTS", P .. "paused") == 1 then
    if rcall("EXISTS", P .. "wait") == 0 then
      rcall("RENAME", P .. "paused", P .. "wait")
    else
      while true do
        local ids = rcall("LRANGE", P .. "paused", 0, 4999)
        if #ids == 0 then break end
        rcall("RPUSH", P .. "wait", unpack(ids))
        rcall("LTRIM", P .. "paused", #ids, -1)
      end
    end
  end
  if rcall("LLEN", P .. "wait") > 0 or rcall("ZCARD", P .. "prioritized") > 0 then
    ready_marker(false)
  else
    delay_marker()
  end
end
emit(ARGV[1])
return 0
