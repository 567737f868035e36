-- The schema that nb2prod's store created before migrations (Base.metadata.create_all of commit 42a2fe1,
-- the last release without Alembic), compiled for this dialect, with a few rows. Do not edit: it stands
-- for stores that exist in the field.
CREATE TABLE nb2prod_meta (
	key VARCHAR(64) NOT NULL, 
	value INTEGER NOT NULL, 
	PRIMARY KEY (key)
);
CREATE TABLE runs (
	id VARCHAR(32) NOT NULL, 
	notebook TEXT NOT NULL, 
	notebook_sha256 VARCHAR(64), 
	status VARCHAR(16) NOT NULL, 
	origin VARCHAR(16) NOT NULL, 
	created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	started_at TIMESTAMP WITHOUT TIME ZONE, 
	ended_at TIMESTAMP WITHOUT TIME ZONE, 
	heartbeat_at TIMESTAMP WITHOUT TIME ZONE, 
	pid INTEGER, 
	host VARCHAR(255), 
	parameters JSON NOT NULL, 
	options JSON NOT NULL, 
	mlflow_run_id VARCHAR(64), 
	mlflow_experiment_id VARCHAR(64), 
	tracking_uri TEXT, 
	error JSON, 
	cancel_requested BOOLEAN NOT NULL, 
	resumed_from VARCHAR(32), 
	mlflow_closed BOOLEAN NOT NULL, 
	PRIMARY KEY (id)
);
CREATE INDEX ix_runs_created_at ON runs (created_at);
CREATE INDEX ix_runs_mlflow_run_id ON runs (mlflow_run_id);
CREATE INDEX ix_runs_notebook ON runs (notebook);
CREATE INDEX ix_runs_status ON runs (status);
CREATE TABLE schedulers (
	id VARCHAR(64) NOT NULL, 
	started_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	seen_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	PRIMARY KEY (id)
);
CREATE INDEX ix_schedulers_seen_at ON schedulers (seen_at);
CREATE TABLE schedules (
	id SERIAL NOT NULL, 
	name VARCHAR(128) NOT NULL, 
	notebook TEXT NOT NULL, 
	cron VARCHAR(128) NOT NULL, 
	timezone VARCHAR(64) NOT NULL, 
	mode VARCHAR(16) NOT NULL, 
	parameters JSON NOT NULL, 
	options JSON NOT NULL, 
	catchup VARCHAR(8) NOT NULL, 
	catchup_max INTEGER NOT NULL, 
	max_concurrent INTEGER NOT NULL, 
	timeout_s FLOAT, 
	retries INTEGER NOT NULL, 
	retry_backoff_s FLOAT NOT NULL, 
	notify_url TEXT, 
	notify_command TEXT, 
	notify_on_success BOOLEAN NOT NULL, 
	paused BOOLEAN NOT NULL, 
	created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	considered_until TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	next_fire_at TIMESTAMP WITHOUT TIME ZONE, 
	PRIMARY KEY (id), 
	UNIQUE (name)
);
CREATE INDEX ix_schedules_next_fire_at ON schedules (next_fire_at);
CREATE TABLE run_stages (
	run_id VARCHAR(32) NOT NULL, 
	name VARCHAR(128) NOT NULL, 
	position INTEGER NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	started_at TIMESTAMP WITHOUT TIME ZONE, 
	ended_at TIMESTAMP WITHOUT TIME ZONE, 
	duration_s FLOAT, 
	attempts INTEGER NOT NULL, 
	system_retries INTEGER NOT NULL, 
	cached_from VARCHAR(32), 
	cache_key VARCHAR(64), 
	mlflow_run_id VARCHAR(64), 
	error JSON, 
	PRIMARY KEY (run_id, name), 
	FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE
);
CREATE TABLE schedule_fires (
	id SERIAL NOT NULL, 
	schedule_id INTEGER NOT NULL, 
	scheduled_time TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	reason TEXT, 
	claimed_by VARCHAR(64), 
	lease_until TIMESTAMP WITHOUT TIME ZONE, 
	attempts INTEGER NOT NULL, 
	next_attempt_at TIMESTAMP WITHOUT TIME ZONE, 
	run_id VARCHAR(32), 
	mlflow_run_id VARCHAR(64), 
	notebook_sha256 VARCHAR(64), 
	parameters JSON, 
	started_at TIMESTAMP WITHOUT TIME ZONE, 
	ended_at TIMESTAMP WITHOUT TIME ZONE, 
	error TEXT, 
	PRIMARY KEY (id), 
	CONSTRAINT one_fire_per_time UNIQUE (schedule_id, scheduled_time), 
	FOREIGN KEY(schedule_id) REFERENCES schedules (id) ON DELETE CASCADE
);
CREATE INDEX ix_schedule_fires_schedule_id ON schedule_fires (schedule_id);
CREATE INDEX ix_schedule_fires_status ON schedule_fires (status);
CREATE TABLE stage_attempts (
	id SERIAL NOT NULL, 
	run_id VARCHAR(32) NOT NULL, 
	stage VARCHAR(128) NOT NULL, 
	attempt INTEGER NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	started_at TIMESTAMP WITHOUT TIME ZONE, 
	ended_at TIMESTAMP WITHOUT TIME ZONE, 
	node VARCHAR(64), 
	error JSON, 
	PRIMARY KEY (id), 
	FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE
);
CREATE INDEX ix_stage_attempts_run_id ON stage_attempts (run_id);
CREATE TABLE schedule_fire_attempts (
	id SERIAL NOT NULL, 
	fire_id INTEGER NOT NULL, 
	attempt INTEGER NOT NULL, 
	run_id VARCHAR(32), 
	status VARCHAR(16) NOT NULL, 
	started_at TIMESTAMP WITHOUT TIME ZONE, 
	ended_at TIMESTAMP WITHOUT TIME ZONE, 
	error TEXT, 
	PRIMARY KEY (id), 
	FOREIGN KEY(fire_id) REFERENCES schedule_fires (id) ON DELETE CASCADE
);
CREATE INDEX ix_schedule_fire_attempts_fire_id ON schedule_fire_attempts (fire_id);
INSERT INTO nb2prod_meta (key, value) VALUES ('schema_version', 1);
INSERT INTO runs (id, notebook, notebook_sha256, status, origin, created_at, started_at, ended_at, heartbeat_at, pid, host, parameters, options, mlflow_run_id, mlflow_experiment_id, tracking_uri, error, cancel_requested, resumed_from, mlflow_closed) VALUES ('0123456789ab', '/home/ana/pipeline.ipynb', NULL, 'done', 'cli', '2026-11-30 10:00:00', '2026-11-30 10:00:00', '2026-11-30 10:01:00', '2026-11-30 10:01:00', 4242, 'laptop', '{"n": 200}', '{}', 'a' , '0', 'sqlite:////home/ana/mlflow.db', NULL, false, NULL, false);
INSERT INTO run_stages (run_id, name, position, status, started_at, ended_at, duration_s, attempts, system_retries, cached_from, cache_key, mlflow_run_id, error) VALUES ('0123456789ab', 'train', 0, 'done', '2026-11-30 10:00:01', '2026-11-30 10:00:59', 58.0, 1, 0, NULL, NULL, NULL, NULL);
INSERT INTO schedules (name, notebook, cron, timezone, mode, parameters, options, catchup, catchup_max, max_concurrent, timeout_s, retries, retry_backoff_s, notify_url, notify_command, notify_on_success, paused, created_at, considered_until, next_fire_at) VALUES ('nightly', '/home/ana/pipeline.ipynb', '0 2 * * *', 'UTC', 'pipeline', '{}', '{}', 'skip', 100, 1, NULL, 0, 30.0, NULL, NULL, false, false, '2026-11-29 00:00:00', '2026-11-30 02:00:00', '2026-12-01 02:00:00');
INSERT INTO schedule_fires (schedule_id, scheduled_time, status, reason, claimed_by, lease_until, attempts, next_attempt_at, run_id, mlflow_run_id, notebook_sha256, parameters, started_at, ended_at, error) VALUES (1, '2026-11-30 02:00:00', 'done', NULL, 'laptop:1:abcdef', '2026-11-30 02:00:30', 1, NULL, '0123456789ab', NULL, NULL, '{}', '2026-11-30 02:00:00', '2026-11-30 02:01:00', NULL);
