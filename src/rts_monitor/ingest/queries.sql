-- name: copy_metrics
-- The fast path: rows straight into the hypertable. A unique violation (a replayed batch) aborts
-- the flush, which is then redone through the staging table below. Values are the scaled
-- integers the table stores (ingest/validate.py: SCALES; migration 0220).
COPY agent_metrics (agent_device_id, collected_at, cpu_percent_x10, memory_used_gb_x1000, memory_percent_x10,
                    disk_used_gb_x1000, disk_percent_x10, load_average_1m_x100, load_average_5m_x100,
                    load_average_15m_x100, uptime_seconds, network_rx_bytes, network_tx_bytes) FROM STDIN (FORMAT BINARY)

-- name: create_stage
-- Per-session staging table for the duplicate-tolerant path; emptied at every commit.
CREATE TEMP TABLE IF NOT EXISTS ingest_stage (LIKE agent_metrics) ON COMMIT DELETE ROWS

-- name: copy_stage
COPY ingest_stage (agent_device_id, collected_at, cpu_percent_x10, memory_used_gb_x1000, memory_percent_x10,
                   disk_used_gb_x1000, disk_percent_x10, load_average_1m_x100, load_average_5m_x100,
                   load_average_15m_x100, uptime_seconds, network_rx_bytes, network_tx_bytes) FROM STDIN (FORMAT BINARY)

-- name: insert_from_stage
-- Rows already stored are skipped; what was written comes back per device so each request can be
-- told how many of its samples were new and how many duplicates.
WITH ins AS (
    INSERT INTO agent_metrics SELECT * FROM ingest_stage ON CONFLICT DO NOTHING
    RETURNING agent_device_id, collected_at
)
SELECT agent_device_id, array_agg(collected_at) AS written FROM ins GROUP BY agent_device_id

-- name: flush_side_effects
-- Everything else a flush changes, in one statement (one round trip) inside the flush's
-- transaction: the per-device committed ranges for the rollup tiers, last_metrics_received and
-- offline -> online (with its transition row; 'disabled' and 'error' are left alone), and the
-- monitored services from each device's newest sample. Locks are taken in id order so two
-- concurrent flushes cannot deadlock on the device rows.
WITH ranges AS (
    INSERT INTO metric_ingest_ranges (agent_device_id, range_start, range_end, row_count)
    SELECT * FROM unnest(%(r_device)b::uuid[], %(r_start)b::timestamptz[], %(r_end)b::timestamptz[],
                         %(r_count)b::int[])
),
-- include: device_side_effects
SELECT (SELECT count(*) FROM dev) AS devices, (SELECT count(*) FROM announced) AS announced

-- name: insert_small_flush
-- Parameters are bound in binary (the b placeholders): text arrays cost psycopg ~3x the CPU to build and quote.
-- A small flush (a few rows from many one-sample requests) in ONE statement, run in autocommit:
-- one round trip and one commit instead of BEGIN, COPY, side effects and COMMIT. ON CONFLICT makes
-- it duplicate-tolerant by itself; RETURNING tells which rows were new. Side effects as in
-- flush_side_effects, with the ranges computed from what was actually inserted.
WITH ins AS (
    INSERT INTO agent_metrics
    SELECT * FROM unnest(%(m_device)b::uuid[], %(m_at)b::timestamptz[], %(m_cpu)b::smallint[], %(m_mem_gb)b::int[],
                         %(m_mem)b::smallint[], %(m_disk_gb)b::int[], %(m_disk)b::smallint[], %(m_la1)b::int[],
                         %(m_la5)b::int[], %(m_la15)b::int[], %(m_uptime)b::bigint[], %(m_rx)b::bigint[],
                         %(m_tx)b::bigint[])
    ON CONFLICT DO NOTHING
    RETURNING agent_device_id, collected_at
), ranges AS (
    INSERT INTO metric_ingest_ranges (agent_device_id, range_start, range_end, row_count)
    SELECT agent_device_id, min(collected_at), max(collected_at), count(*) FROM ins GROUP BY agent_device_id
),
-- include: device_side_effects
SELECT agent_device_id, collected_at FROM ins CROSS JOIN (SELECT count(*) FROM announced) a

-- name: device_side_effects
-- Shared CTEs of both write paths (included above): last_metrics_received and offline -> online
-- (with its transition row; 'disabled' and 'error' are left alone), and the monitored services
-- from each device's newest sample. Device rows are locked in id order so two concurrent flushes
-- cannot deadlock.
old AS (
    SELECT a.id, a.status FROM agent_devices a
     WHERE a.id = ANY(%(devices)b::uuid[])
     ORDER BY a.id
       FOR NO KEY UPDATE
), dev AS (
    UPDATE agent_devices a
       SET last_metrics_received = now(),
           status = CASE WHEN old.status = 'offline' THEN 'online' ELSE a.status END,
           status_changed_at = CASE WHEN old.status = 'offline' THEN now() ELSE a.status_changed_at END
      FROM old
     WHERE a.id = old.id
    RETURNING a.id, old.status AS from_status, a.status AS to_status
), transitions AS (
    INSERT INTO agent_status_transitions (agent_device_id, from_status, to_status, reason)
    SELECT id, from_status, to_status, 'metrics' FROM dev WHERE from_status IS DISTINCT FROM to_status
), services AS (
    INSERT INTO agent_monitored_services AS s
           (agent_device_id, service_name, service_display_name, service_type, status, pid,
            last_checked, last_state_change)
    SELECT d, n, dn, ty, st, p, t, t
      FROM unnest(%(s_device)b::uuid[], %(s_name)b::text[], %(s_display)b::text[], %(s_type)b::text[],
                  %(s_status)b::text[], %(s_pid)b::int[], %(s_at)b::timestamptz[]) AS x(d, n, dn, ty, st, p, t)
     ORDER BY d, n
    ON CONFLICT (agent_device_id, service_name) DO UPDATE
       SET status = EXCLUDED.status,
           pid = EXCLUDED.pid,
           service_display_name = coalesce(EXCLUDED.service_display_name, s.service_display_name),
           service_type = coalesce(EXCLUDED.service_type, s.service_type),
           last_checked = EXCLUDED.last_checked,
           last_state_change = CASE WHEN s.status IS DISTINCT FROM EXCLUDED.status
                                    THEN EXCLUDED.last_checked ELSE s.last_state_change END,
           restart_count = coalesce(s.restart_count, 0)
                           + CASE WHEN s.pid IS NOT NULL AND EXCLUDED.pid IS NOT NULL AND s.pid <> EXCLUDED.pid
                                  THEN 1 ELSE 0 END
     -- an old replay never overwrites a newer observation
     WHERE s.status IS NULL OR s.last_checked IS NULL OR s.last_checked < EXCLUDED.last_checked
), announced AS (
    -- The console's live channel (console/live.py): which devices got samples, one NOTIFY per
    -- flush (a chunk per 200 devices keeps each payload far below NOTIFY's 8,000-byte limit),
    -- delivered at commit to every API process. In the flush's own statement: no extra round
    -- trip or connection (measured: as an after-ingest hook it made every flush's
    -- hook wait 14-78 ms longer, docs/console.md). Referenced by both final SELECTs, so it runs.
    SELECT pg_notify('rts_console_samples', string_agg(id::text, ','))
      FROM (SELECT id, (row_number() OVER ()) / 200 AS chunk FROM dev) d
     GROUP BY chunk
)

-- name: probe_rows
-- Diagnosis only, in a transaction that is always rolled back (pipeline._diagnose): does the
-- database refuse these rows of one request? The same insert as insert_small_flush, without its
-- side effects.
INSERT INTO agent_metrics
SELECT * FROM unnest(%(m_device)b::uuid[], %(m_at)b::timestamptz[], %(m_cpu)b::smallint[], %(m_mem_gb)b::int[],
                     %(m_mem)b::smallint[], %(m_disk_gb)b::int[], %(m_disk)b::smallint[], %(m_la1)b::int[],
                     %(m_la5)b::int[], %(m_la15)b::int[], %(m_uptime)b::bigint[], %(m_rx)b::bigint[],
                     %(m_tx)b::bigint[])
ON CONFLICT DO NOTHING
