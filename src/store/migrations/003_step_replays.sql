-- Which steps each attempt replayed from their persisted records instead of executing them, as
-- the engine reports them, so that a run's record can say so for every attempt.
CREATE TABLE step_replays (
	run_id TEXT NOT NULL,
	attempt INTEGER NOT NULL,
	path TEXT NOT NULL,
	PRIMARY KEY (run_id, attempt, path)
);
