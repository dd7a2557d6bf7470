-- name: levels
SELECT name, position, bucket_width, source, retention, compress_after, watermark, dropped_before
  FROM rts_tier_levels ORDER BY position

-- name: now_plain
SELECT now() AS now

-- name: level_sizes
-- edition: tsl apache
-- Chunk count and size on disk of a hypertable (the raw table or an apache-edition tier).
SELECT (SELECT count(*) FROM timescaledb_information.chunks
         WHERE hypertable_schema = current_schema() AND hypertable_name = %(name)s) AS chunks,
       hypertable_size(%(name)s::regclass) AS bytes,
       (SELECT time_interval FROM timescaledb_information.dimensions
         WHERE hypertable_schema = current_schema() AND hypertable_name = %(name)s LIMIT 1) AS chunk_interval

-- name: partition_sizes
-- edition: postgres
-- Partition count (the DEFAULT one not counted) and size on disk of a partitioned level.
SELECT count(*) FILTER (WHERE p.range_start IS NOT NULL) AS chunks, coalesce(sum(p.bytes), 0) AS bytes,
       (SELECT partition_interval FROM rts_tier_levels WHERE name = %(name)s) AS chunk_interval
  FROM rts_partitions(%(name)s) p

-- name: set_partition_interval
-- edition: postgres
UPDATE rts_tier_levels SET partition_interval = %(interval)s, updated_at = now() WHERE name = %(name)s

-- name: set_chunk_interval
-- edition: tsl apache
SELECT set_chunk_time_interval(%(name)s::regclass, %(interval)s::interval)

-- name: cagg_sizes
-- edition: tsl
-- Timescale license: a continuous aggregate's materialisation hypertable, its chunks, size, watermark.
SELECT h.table_name AS mat_table,
       (SELECT count(*) FROM timescaledb_information.chunks c
         WHERE c.hypertable_schema = h.schema_name AND c.hypertable_name = h.table_name) AS chunks,
       hypertable_size(format('%%I.%%I', h.schema_name, h.table_name)::regclass) AS bytes,
       (SELECT time_interval FROM timescaledb_information.dimensions d
         WHERE d.hypertable_schema = h.schema_name AND d.hypertable_name = h.table_name LIMIT 1) AS chunk_interval,
-- include: cagg_watermark
  FROM timescaledb_information.continuous_aggregates a
  JOIN _timescaledb_catalog.hypertable h
    ON h.schema_name = a.materialization_hypertable_schema AND h.table_name = a.materialization_hypertable_name
 WHERE a.view_name = %(name)s

-- name: cagg_watermark
-- edition: tsl
-- Where a continuous aggregate's materialised part ends; NULL while it has materialised nothing.
-- An empty cagg's watermark is the minimum of its time type: the int64 minimum before 2.29 and,
-- from 2.29 on, -210866803200000000 (4714-11-24 BC, PostgreSQL's lowest timestamp), which psycopg
-- cannot load as a Python datetime. Our data never predates 1970, so any negative watermark
-- (Unix microseconds) means "nothing yet", whatever sentinel a version picks.
       CASE WHEN _timescaledb_functions.cagg_watermark(h.id) < 0 THEN NULL
            ELSE _timescaledb_functions.to_timestamp(_timescaledb_functions.cagg_watermark(h.id)) END AS watermark

-- name: compression_stats
-- edition: tsl
SELECT before_compression_total_bytes AS before, after_compression_total_bytes AS after,
       (SELECT count(*) FROM timescaledb_information.chunks
         WHERE hypertable_name = 'agent_metrics' AND is_compressed) AS compressed_chunks
  FROM hypertable_compression_stats('agent_metrics')

-- name: tsl_jobs
-- edition: tsl
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
VALUES (%(name)s, %(interval)s::int, now(), 'running', now() + make_interval(secs => %(interval)s::int))
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

-- name: refresh_window
-- edition: tsl
-- How far back a continuous aggregate's refresh policy re-reads (retention must stay outside it).
SELECT (config->>'start_offset')::interval AS w FROM timescaledb_information.jobs
 WHERE proc_name = 'policy_refresh_continuous_aggregate' AND hypertable_name = %(n)s

-- name: retention_cutoff
SELECT now() - %(r)s::interval AS cutoff

-- name: remove_retention_policy
-- edition: tsl
SELECT remove_retention_policy(%(n)s::regclass, if_exists => true)

-- name: add_retention_policy
-- edition: tsl
SELECT add_retention_policy(%(n)s::regclass, %(r)s::interval)

-- name: remove_compression_policy
-- edition: tsl
SELECT remove_compression_policy('agent_metrics', if_exists => true)

-- name: add_compression_policy
-- edition: tsl
SELECT add_compression_policy('agent_metrics', %(a)s::interval)

-- name: refresh_cagg
-- edition: tsl
-- refresh_continuous_aggregate refuses to run inside a transaction block: run in autocommit.
CALL refresh_continuous_aggregate(%(n)s::regclass, %(s)s::timestamptz, %(e)s::timestamptz)

-- name: discard_ranges
-- Timescale license: the continuous aggregates track late rows in their own invalidation log, so
-- the ingest ranges are only drained (else the table would grow forever).
DELETE FROM metric_ingest_ranges WHERE committed_at < now() - INTERVAL '1 minute'

-- ---- maintenance of the project-maintained tiers (apache, postgres: maintenance.py) -------------

-- name: lock_levels
-- Held for a whole maintenance run: refreshes, manual refreshes and retention never interleave.
SELECT * FROM rts_tier_levels ORDER BY position FOR UPDATE

-- name: now
SELECT coalesce(%(now)s::timestamptz, now()) AS now

-- name: refresh_work_mem
-- One refresh aggregates an hour of the whole fleet (10,000 devices: 600,000 raw rows) in a few
-- sorts and hashes; at the server's default work_mem they spill to disk. For this transaction only.
SET LOCAL work_mem = '256MB'

-- name: create_invalid
-- (level, device, bucket) pairs whose materialised rows late samples made stale, for one run.
CREATE TEMP TABLE _inv (level text, dev uuid, bucket timestamptz) ON COMMIT DROP

-- name: create_invalid_ranges
-- One tier's stale buckets as runs of consecutive buckets per device [lo, hi): what its rebuild reads.
CREATE TEMP TABLE _inv_ranges (dev uuid, lo timestamptz, hi timestamptz) ON COMMIT DROP

-- name: clear_invalid_ranges
TRUNCATE _inv_ranges

-- name: fill_invalid_ranges
-- Gaps and islands: consecutive buckets of a device share bucket - rank * width. The pairs of a
-- level are distinct (consume_ranges and derive_invalid insert them DISTINCT, once per level).
INSERT INTO _inv_ranges (dev, lo, hi)
SELECT dev, min(bucket), max(bucket) + %(w)s::interval
  FROM (SELECT dev, bucket, bucket - row_number() OVER (PARTITION BY dev ORDER BY bucket) * %(w)s::interval AS island
          FROM _inv WHERE level = %(level)s) s
 GROUP BY dev, island

-- name: invalid_bounds
SELECT min(lo) AS lo, max(hi) AS hi, count(*) AS n FROM _inv_ranges

-- name: analyze_invalid_ranges
ANALYZE _inv_ranges

-- name: consume_ranges
-- Pending ranges → distinct (device, 5m bucket) below the 5m watermark and above what retention
-- dropped from raw (re-aggregating a bucket whose raw rows are partly gone would corrupt it).
WITH consumed AS (
    DELETE FROM metric_ingest_ranges RETURNING agent_device_id, range_start, range_end
), clipped AS (
    SELECT agent_device_id AS dev,
           date_bin(INTERVAL '5 minutes', greatest(range_start, coalesce(%(floor)s::timestamptz, '-infinity')),
                    TIMESTAMPTZ '2000-01-03 00:00:00+00') AS lo,
           least(range_end, coalesce(%(wm)s::timestamptz, '-infinity') - INTERVAL '1 microsecond') AS hi
      FROM consumed
)
INSERT INTO _inv (level, dev, bucket)
SELECT DISTINCT %(level)s::text, dev, b
  FROM clipped, generate_series(lo, hi, INTERVAL '5 minutes') AS b
 WHERE hi >= lo

-- name: consumed_count
SELECT count(*) AS n FROM _inv WHERE level = %(level)s

-- name: derive_invalid
-- The buckets of the tier above that contain stale buckets of the tier below.
INSERT INTO _inv (level, dev, bucket)
SELECT DISTINCT %(level)s::text, dev, date_bin(%(w)s::interval, bucket, TIMESTAMPTZ '2000-01-03 00:00:00+00')
  FROM _inv
 WHERE level = %(below)s AND date_bin(%(w)s::interval, bucket, TIMESTAMPTZ '2000-01-03 00:00:00+00') < %(wm)s

-- name: bucket_start
SELECT date_bin(%(w)s::interval, %(t)s::timestamptz, TIMESTAMPTZ '2000-01-03 00:00:00+00') AS wm

-- name: range_bounds
-- A manual range widened to whole buckets, kept below the watermark and above what retention
-- dropped from the source level (rebuilding from partly dropped rows would lose data).
SELECT greatest(date_bin(%(w)s::interval, %(s)s::timestamptz, TIMESTAMPTZ '2000-01-03 00:00:00+00'),
                coalesce(date_bin(%(w)s::interval, %(floor)s::timestamptz - INTERVAL '1 microsecond',
                                  TIMESTAMPTZ '2000-01-03 00:00:00+00') + %(w)s::interval, '-infinity')) AS lo,
       least(date_bin(%(w)s::interval, %(e)s::timestamptz - INTERVAL '1 microsecond',
                      TIMESTAMPTZ '2000-01-03 00:00:00+00') + %(w)s::interval,
             %(wm)s::timestamptz) AS hi

-- name: set_watermark
UPDATE rts_tier_levels SET watermark = %(wm)s, updated_at = now() WHERE name = %(name)s

-- name: raw_start_chunks
-- edition: apache
-- Where raw data starts: the oldest chunk (no scan of the table, which has no time index).
SELECT date_bin(%(w)s::interval, min(range_start), TIMESTAMPTZ '2000-01-03 00:00:00+00') AS lo
  FROM timescaledb_information.chunks
 WHERE hypertable_schema = current_schema() AND hypertable_name = 'agent_metrics'

-- name: raw_start_partitions
-- edition: postgres
-- Where raw data starts: the oldest partition, or an older row waiting in the DEFAULT partition.
SELECT date_bin(%(w)s::interval, least((SELECT min(range_start) FROM rts_partitions('agent_metrics')),
                                       (SELECT min(collected_at) FROM agent_metrics_default)),
                TIMESTAMPTZ '2000-01-03 00:00:00+00') AS lo

-- name: pending_min
SELECT min(range_start) AS lo FROM metric_ingest_ranges

-- name: chunks_before
-- edition: apache
SELECT max(range_end) AS horizon, count(*) AS n FROM timescaledb_information.chunks
 WHERE hypertable_schema = current_schema() AND hypertable_name = %(name)s AND range_end <= %(cutoff)s

-- name: drop_chunks
-- edition: apache
SELECT drop_chunks(%(name)s::regclass, older_than => %(cutoff)s::timestamptz)

-- name: drop_partitions
-- edition: postgres
SELECT partition_name, range_end FROM rts_partitions_drop(%(name)s, %(cutoff)s)

-- name: partitions_maintain
-- edition: postgres
-- The coming partitions of every level, and one for every row waiting in a DEFAULT partition.
SELECT rts_partitions_maintain(%(ahead)s::interval) AS made

-- name: set_dropped
UPDATE rts_tier_levels SET dropped_before = greatest(dropped_before, %(horizon)s), updated_at = now()
 WHERE name = %(name)s

-- name: tier_watermarks
-- Each tier's materialised-up-to time as the project keeps it (apache, postgres editions), and now.
SELECT name, watermark, now() AS now FROM rts_tier_levels WHERE position > 0 ORDER BY position

-- name: cagg_watermarks
-- edition: tsl
-- Each continuous aggregate's watermark (no sizes: read every few seconds by the metrics sampler).
SELECT a.view_name AS name, now() AS now,
-- include: cagg_watermark
  FROM timescaledb_information.continuous_aggregates a
  JOIN _timescaledb_catalog.hypertable h
    ON h.schema_name = a.materialization_hypertable_schema AND h.table_name = a.materialization_hypertable_name
 WHERE a.view_name IN (SELECT name FROM rts_tier_levels WHERE position > 0)
