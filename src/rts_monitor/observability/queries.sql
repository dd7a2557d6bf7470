-- name: outbox_backlog
-- Pending notification work by channel, and how long the oldest has waited (rts_outbox_backlog).
SELECT channel, count(*) AS pending, extract(epoch FROM now() - min(created_at)) AS oldest_seconds
  FROM alert_outbox WHERE status = 'pending' GROUP BY channel

-- name: job_runs
-- Every scheduled job's record (core/scheduler.py), with its age as the database's clock says.
SELECT name, interval_seconds, last_started_at, last_success_at, last_failure_at, last_error,
       runs, failures, consecutive_failures,
       last_started_at IS NULL OR last_started_at < registered_at AS waiting,
       extract(epoch FROM now() - registered_at) AS since_registered_seconds,
       extract(epoch FROM now() - last_success_at) AS since_success_seconds,
       extract(epoch FROM now() - last_started_at) AS since_start_seconds
  FROM rts_job_runs ORDER BY name

-- name: database_facts
-- What doctor checks of the server: versions, the extension, time zone, clock, workers.
SELECT current_setting('server_version') AS postgres,
       current_setting('server_version_num')::int AS postgres_num,
       (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb') AS timescaledb,
       (SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb') AS timescaledb_available,
       current_setting('TimeZone') AS timezone,
       extract(epoch FROM clock_timestamp()) AS server_epoch,
       current_setting('timescaledb.max_background_workers', true) AS max_background_workers,
       current_setting('max_worker_processes') AS max_worker_processes,
       current_setting('timescaledb.license', true) AS license

-- name: channels_in_use
-- Which notification channels enabled alert rules deliver to (doctor checks their settings).
SELECT count(*) FILTER (WHERE notification_channels ? 'email') AS email,
       count(*) FILTER (WHERE notification_channels ? 'webhook' OR webhook_url IS NOT NULL) AS webhook,
       count(*) FILTER (WHERE notification_channels ? 'sms') AS sms
  FROM agent_alerts WHERE is_active AND NOT soft_delete

-- name: standby_facts
-- Asked of RTS_DATABASE_READ_URL's server and of the primary alike (doctor.standby). Reading
-- pg_control_system() takes superuser or pg_monitor: without it the identifier is NULL.
SELECT pg_is_in_recovery() AS in_recovery,
       current_database() AS dbname,
       CASE WHEN has_function_privilege('pg_control_system()', 'EXECUTE')
            THEN (SELECT system_identifier::text FROM pg_control_system()) END AS system_identifier,
       CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text END AS replayed,
       CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END AS paused
