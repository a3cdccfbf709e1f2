-- Each checkpoint reads the run's highest step seq (store_steps_put). Without an index that read
-- visits every step record of the run, so checkpointing a run of n steps cost O(n^2) in all: a
-- loop of 1,000 iterations spent about a millisecond a step on it by its end. The same index
-- serves listing a run's steps in order for replay.
CREATE INDEX steps_run_seq ON steps (run_id, seq);
