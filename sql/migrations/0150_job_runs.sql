-- Every scheduled job's last runs, one row per job, written by the scheduler after each run that
-- took place here (core/scheduler.py): `rts-monitor doctor` reads it to say which job has not
-- run recently or keeps failing, whichever process ran it. (rts_tier_jobs keeps the tier jobs'
-- own detail; this is the one table for all jobs.)
CREATE TABLE rts_job_runs (
    name                 text PRIMARY KEY,
    interval_seconds     double precision NOT NULL,
    -- when a scheduler last started with this job: before its first tick, "not run yet" is fine
    registered_at        timestamptz NOT NULL DEFAULT now(),
    last_started_at      timestamptz,
    last_success_at      timestamptz,
    last_failure_at      timestamptz,
    last_error           text,
    last_duration_ms     real,
    runs                 bigint  NOT NULL DEFAULT 0,
    failures             bigint  NOT NULL DEFAULT 0,
    consecutive_failures integer NOT NULL DEFAULT 0
);
