-- The encrypted weights that answered a settled job, as the node's signed receipt names them
-- (`job_settled.weights_hash`, NEP-297 `ecloud_marketplace` 1.2.0): 64 hex characters, NULL
-- for plain weights and for jobs settled by older marketplace versions. The same SQL runs on
-- SQLite and PostgreSQL.
ALTER TABLE jobs ADD COLUMN weights_hash TEXT;
