-- The first schema: flows and their immutable versions, runs with attempts and step records,
-- waitpoints, the piece store, schedule ticks. Written in the subset of SQL that SQLite and
-- PostgreSQL share, so one file serves both. Times are ms since the epoch; JSON is TEXT.

CREATE TABLE flows (
	id TEXT PRIMARY KEY,
	display_name TEXT NOT NULL,
	version_id TEXT NOT NULL,
	version_number INTEGER NOT NULL,
	schedule_cron TEXT,
	schedule_tz TEXT,
	schedule_output TEXT,
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
	deleted_at BIGINT
);
CREATE INDEX flows_created ON flows (created_at, id);

CREATE TABLE flow_versions (
	id TEXT PRIMARY KEY,
	flow_id TEXT NOT NULL,
	number INTEGER NOT NULL,
	display_name TEXT NOT NULL,
	definition TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	UNIQUE (flow_id, number)
);

CREATE TABLE runs (
	id TEXT PRIMARY KEY,
	flow_id TEXT NOT NULL,
	flow_version_id TEXT NOT NULL,
	status TEXT NOT NULL,
	synchronous INTEGER NOT NULL DEFAULT 0,
	trigger_output TEXT NOT NULL,
	job_id TEXT,
	attempt INTEGER NOT NULL DEFAULT 0,
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
	start_time BIGINT,
	finish_time BIGINT,
	steps TEXT,
	failed_step TEXT,
	response TEXT,
	step_seq BIGINT NOT NULL DEFAULT 0,
	waitpoint_id TEXT,
	resume_payload TEXT,
	retry_of TEXT,
	retries INTEGER NOT NULL DEFAULT 0,
	requeues INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX runs_created ON runs (created_at, id);
CREATE INDEX runs_flow_created ON runs (flow_id, created_at, id);
CREATE INDEX runs_status_updated ON runs (status, updated_at);

CREATE TABLE run_attempts (
	run_id TEXT NOT NULL,
	attempt INTEGER NOT NULL,
	job_id TEXT,
	delivery TEXT,
	worker TEXT,
	execution_type TEXT,
	started_at BIGINT NOT NULL,
	finished_at BIGINT,
	status TEXT,
	replayed INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (run_id, attempt)
);

CREATE TABLE steps (
	run_id TEXT NOT NULL,
	path TEXT NOT NULL,
	seq BIGINT NOT NULL,
	name TEXT NOT NULL,
	type TEXT,
	status TEXT NOT NULL,
	record TEXT NOT NULL,
	duration_ms BIGINT NOT NULL DEFAULT 0,
	attempt INTEGER NOT NULL,
	updated_at BIGINT NOT NULL,
	PRIMARY KEY (run_id, path)
);

-- state: OPEN (the run is paused on it), EARLY (a resume arrived before the pause was
-- persisted: kept with its payload and applied when the pause lands), USED.
CREATE TABLE waitpoints (
	id TEXT PRIMARY KEY,
	run_id TEXT NOT NULL,
	step_path TEXT,
	type TEXT,
	resume_at BIGINT,
	state TEXT NOT NULL,
	payload TEXT,
	created_at BIGINT NOT NULL,
	used_at BIGINT
);
CREATE INDEX waitpoints_run ON waitpoints (run_id, state);

CREATE TABLE store_entries (
	key TEXT PRIMARY KEY,
	value TEXT NOT NULL,
	updated_at BIGINT NOT NULL
);

CREATE TABLE schedule_ticks (
	flow_id TEXT NOT NULL,
	tick BIGINT NOT NULL,
	run_id TEXT,
	created_at BIGINT NOT NULL,
	PRIMARY KEY (flow_id, tick)
);
