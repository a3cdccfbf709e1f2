-- The engine's peak memory for the run's last attempt, as its worker measured it (the sandbox's
-- cgroup peak, or the plain engine's resident peak), so that a run that hit
-- AP_SANDBOX_MEMORY_LIMIT says how far it got. NULL when the worker did not report one.
ALTER TABLE runs ADD COLUMN peak_memory_kb BIGINT;
