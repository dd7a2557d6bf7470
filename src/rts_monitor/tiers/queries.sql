-- name: levels
SELECT name, position, bucket_width, source, retention, compress_after, watermark, dropped_before
  FROM rts_tier_levels ORDER BY position

-- name: level_sizes
-- Chunk count and size on disk of a hypertable (the raw table or an apache-edition tier).
SELECT (SELECT count(*) FROM timescaledb_information.chunks
         WHERE hypertable_schema = current_schema() AND hypertable_name = %(name)s) AS chunks,
       hypertable_size(%(name)s::regclass) AS bytes,
       (SELECT time_interval FROM timescaledb_information.dimensions
         WHERE hypertable_schema = current_schema() AND hypertable_name = %(name)s LIMIT 1) AS chunk_interval

-- name: cagg_sizes
-- Timescale license: a continuous aggregate's materialisation hypertable, its chunks, size, watermark.
SELECT h.table_name AS mat_table,
       (SELECT count(*) FROM timescaledb_information.chunks c
         WHERE c.hypertable_schema = h.schema_name AND c.hypertable_name = h.table_name) AS chunks,
       hypertable_size(format('%%I.%%I', h.schema_name, h.table_name)::regclass) AS bytes,
       (SELECT time_interval FROM timescaledb_information.dimensions d
         WHERE d.hypertable_schema = h.schema_name AND d.hypertable_name = h.table_name LIMIT 1) AS chunk_interval,
       CASE WHEN _timescaledb_functions.cagg_watermark(h.id) = -9223372036854775808 THEN NULL
            ELSE _timescaledb_functions.to_timestamp(_timescaledb_functions.cagg_watermark(h.id)) END AS watermark
  FROM timescaledb_information.continuous_aggregates a
  JOIN _timescaledb_catalog.hypertable h
    ON h.schema_name = a.materialization_hypertable_schema AND h.table_name = a.materialization_hypertable_name
 WHERE a.view_name = %(name)s

-- name: compression_stats
SELECT before_compression_total_bytes AS before, after_compression_total_bytes AS after,
       (SELECT count(*) FROM timescaledb_information.chunks
         WHERE hypertable_name = 'agent_metrics' AND is_compressed) AS compressed_chunks
  FROM hypertable_compression_stats('agent_metrics')

-- name: tsl_jobs
-- Timescale license: the policies' own jobs and their stats.
SELECT j.job_id, j.proc_name, j.hypertable_name, j.schedule_interval, j.config,
       s.last_run_started_at, s.last_run_status, s.next_start, s.total_failures, s.total_runs
  FROM timescaledb_information.jobs j
  LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id
 WHERE j.proc_name IN ('policy_refresh_continuous_aggregate', 'policy_retention', 'policy_compression')
 ORDER BY j.job_id

-- name: apache_jobs
SELECT name, interval_seconds, last_started_at, last_finished_at, last_status, last_error,
       last_duration_ms, last_rows, total_runs, total_failures, consecutive_failures, next_run_at
  FROM rts_tier_jobs ORDER BY name

-- name: set_retention
UPDATE rts_tier_levels SET retention = %(retention)s, updated_at = now() WHERE name = %(name)s

-- name: set_compress_after
UPDATE rts_tier_levels SET compress_after = %(after)s, updated_at = now() WHERE name = 'agent_metrics'

-- name: job_started
INSERT INTO rts_tier_jobs (name, interval_seconds, last_started_at, last_status, next_run_at)
VALUES (%(name)s, %(interval)s, now(), 'running', now() + make_interval(secs => %(interval)s))
ON CONFLICT (name) DO UPDATE
   SET interval_seconds = EXCLUDED.interval_seconds, last_started_at = now(), last_status = 'running',
       next_run_at = now() + make_interval(secs => EXCLUDED.interval_seconds)

-- name: job_finished
UPDATE rts_tier_jobs
   SET last_finished_at = now(), last_status = %(status)s, last_error = %(error)s,
       last_duration_ms = %(ms)s, last_rows = %(rows)s, total_runs = total_runs + 1,
       total_failures = total_failures + (%(status)s = 'failed')::int,
       consecutive_failures = CASE WHEN %(status)s = 'failed' THEN consecutive_failures + 1 ELSE 0 END
 WHERE name = %(name)s

-- name: discard_ranges
-- Timescale license: the continuous aggregates track late rows in their own invalidation log, so
-- the ingest ranges are only drained (else the table would grow forever).
DELETE FROM metric_ingest_ranges WHERE committed_at < now() - INTERVAL '1 minute'
