-- Runs are indexed by status alone: the reaper reads the few runs that are not over, and the
-- metrics count runs by status from the index without reading the rows. updated_at changes on
-- every state change of a run; out of the index, those changes write one page fewer.
DROP INDEX runs_status_updated;
CREATE INDEX runs_status ON runs (status);
