-- Takes the next job (moveToActive). ARGV: 1 now (ms), 2 lock token, 3 lock duration (ms),
-- 4 worker name ("" for none). Returns fetch()'s result (lib.lua).
return fetch(tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4])
