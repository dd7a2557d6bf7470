-- rts:no-transaction
-- The timescale-license form of 0220_scaled_metric_storage.sql (read it for the why): metric
-- values stored as integers at the agent's precision, read through the view agent_metric_values.
--
-- A column's type cannot change while the hypertable has compression enabled, nor while
-- continuous aggregates read it. So: stop the compression policy, decompress what is compressed,
-- switch compression off, drop the three tiers (their policies go with them), change the columns,
-- then build everything again from rts_tier_levels (the DBA's retention per level and
-- compress-after) and re-materialise the tiers from the raw rows. Each step is idempotent, so a
-- run interrupted half way is finished by running the migrations again.

-- What the DBA set that lives only in TimescaleDB's catalog: the tiers' chunk intervals. A table,
-- not a temp table, so that a run interrupted after the tiers were dropped still finds them.
CREATE TABLE IF NOT EXISTS rts_scaled_storage_tier_chunks AS
SELECT format('%I.%I', ca.view_schema, ca.view_name) AS view_name, d.time_interval
  FROM timescaledb_information.continuous_aggregates ca
  JOIN timescaledb_information.dimensions d
    ON d.hypertable_schema = ca.materialization_hypertable_schema
   AND d.hypertable_name = ca.materialization_hypertable_name
 WHERE ca.view_schema = current_schema() AND d.time_interval IS NOT NULL;

SELECT remove_compression_policy('agent_metrics', if_exists => true);
SELECT count(decompress_chunk(c, if_compressed => true)) FROM show_chunks('agent_metrics') c;
ALTER TABLE agent_metrics SET (timescaledb.compress = false);

DROP MATERIALIZED VIEW IF EXISTS agent_metrics_1d;
DROP MATERIALIZED VIEW IF EXISTS agent_metrics_1h;
DROP MATERIALIZED VIEW IF EXISTS agent_metrics_5m;

ALTER TABLE agent_metrics DROP CONSTRAINT IF EXISTS valid_percentages;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM information_schema.columns
                WHERE table_schema = current_schema() AND table_name = 'agent_metrics'
                  AND column_name = 'cpu_percent') THEN
        ALTER TABLE agent_metrics
            ALTER COLUMN cpu_percent TYPE smallint USING round(cpu_percent::float8 * 10)::smallint,
            ALTER COLUMN memory_used_gb TYPE integer USING round(memory_used_gb::float8 * 1000)::integer,
            ALTER COLUMN memory_percent TYPE smallint USING round(memory_percent::float8 * 10)::smallint,
            ALTER COLUMN disk_used_gb TYPE integer USING round(disk_used_gb::float8 * 1000)::integer,
            ALTER COLUMN disk_percent TYPE smallint USING round(disk_percent::float8 * 10)::smallint,
            ALTER COLUMN load_average_1m TYPE integer USING round(load_average_1m::float8 * 100)::integer,
            ALTER COLUMN load_average_5m TYPE integer USING round(load_average_5m::float8 * 100)::integer,
            ALTER COLUMN load_average_15m TYPE integer USING round(load_average_15m::float8 * 100)::integer;

        ALTER TABLE agent_metrics RENAME COLUMN cpu_percent TO cpu_percent_x10;
        ALTER TABLE agent_metrics RENAME COLUMN memory_used_gb TO memory_used_gb_x1000;
        ALTER TABLE agent_metrics RENAME COLUMN memory_percent TO memory_percent_x10;
        ALTER TABLE agent_metrics RENAME COLUMN disk_used_gb TO disk_used_gb_x1000;
        ALTER TABLE agent_metrics RENAME COLUMN disk_percent TO disk_percent_x10;
        ALTER TABLE agent_metrics RENAME COLUMN load_average_1m TO load_average_1m_x100;
        ALTER TABLE agent_metrics RENAME COLUMN load_average_5m TO load_average_5m_x100;
        ALTER TABLE agent_metrics RENAME COLUMN load_average_15m TO load_average_15m_x100;
    END IF;
END
$$;

ALTER TABLE agent_metrics ADD CONSTRAINT valid_percentages CHECK (
    cpu_percent_x10 BETWEEN 0 AND 1000 AND memory_percent_x10 BETWEEN 0 AND 1000 AND
    disk_percent_x10 BETWEEN 0 AND 1000
);

CREATE OR REPLACE VIEW agent_metric_values AS
SELECT agent_device_id, collected_at,
       (cpu_percent_x10::float8 / 10)::real AS cpu_percent,
       (memory_used_gb_x1000::float8 / 1000)::real AS memory_used_gb,
       (memory_percent_x10::float8 / 10)::real AS memory_percent,
       (disk_used_gb_x1000::float8 / 1000)::real AS disk_used_gb,
       (disk_percent_x10::float8 / 10)::real AS disk_percent,
       (load_average_1m_x100::float8 / 100)::real AS load_average_1m,
       (load_average_5m_x100::float8 / 100)::real AS load_average_5m,
       (load_average_15m_x100::float8 / 100)::real AS load_average_15m,
       uptime_seconds, network_rx_bytes, network_tx_bytes
  FROM agent_metrics;

-- The tiers as in 0031_rollup_tiers.tsl.sql; the 5-minute one reads the scaled columns as the
-- view does, so every bucket holds exactly the numbers it held before.
CREATE MATERIALIZED VIEW IF NOT EXISTS agent_metrics_5m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '5 minutes', collected_at) AS bucket,
       agent_device_id,
       count(*) AS samples,
       sum((cpu_percent_x10::float8 / 10)::real::float8) AS cpu_percent_sum,
       count(cpu_percent_x10) AS cpu_percent_count,
       min((cpu_percent_x10::float8 / 10)::real) AS cpu_percent_min,
       max((cpu_percent_x10::float8 / 10)::real) AS cpu_percent_max,
       sum((memory_used_gb_x1000::float8 / 1000)::real::float8) AS memory_used_gb_sum,
       count(memory_used_gb_x1000) AS memory_used_gb_count,
       min((memory_used_gb_x1000::float8 / 1000)::real) AS memory_used_gb_min,
       max((memory_used_gb_x1000::float8 / 1000)::real) AS memory_used_gb_max,
       sum((memory_percent_x10::float8 / 10)::real::float8) AS memory_percent_sum,
       count(memory_percent_x10) AS memory_percent_count,
       min((memory_percent_x10::float8 / 10)::real) AS memory_percent_min,
       max((memory_percent_x10::float8 / 10)::real) AS memory_percent_max,
       sum((disk_used_gb_x1000::float8 / 1000)::real::float8) AS disk_used_gb_sum,
       count(disk_used_gb_x1000) AS disk_used_gb_count,
       min((disk_used_gb_x1000::float8 / 1000)::real) AS disk_used_gb_min,
       max((disk_used_gb_x1000::float8 / 1000)::real) AS disk_used_gb_max,
       sum((disk_percent_x10::float8 / 10)::real::float8) AS disk_percent_sum,
       count(disk_percent_x10) AS disk_percent_count,
       min((disk_percent_x10::float8 / 10)::real) AS disk_percent_min,
       max((disk_percent_x10::float8 / 10)::real) AS disk_percent_max,
       sum((load_average_1m_x100::float8 / 100)::real::float8) AS load_average_1m_sum,
       count(load_average_1m_x100) AS load_average_1m_count,
       min((load_average_1m_x100::float8 / 100)::real) AS load_average_1m_min,
       max((load_average_1m_x100::float8 / 100)::real) AS load_average_1m_max,
       sum((load_average_5m_x100::float8 / 100)::real::float8) AS load_average_5m_sum,
       count(load_average_5m_x100) AS load_average_5m_count,
       min((load_average_5m_x100::float8 / 100)::real) AS load_average_5m_min,
       max((load_average_5m_x100::float8 / 100)::real) AS load_average_5m_max,
       sum((load_average_15m_x100::float8 / 100)::real::float8) AS load_average_15m_sum,
       count(load_average_15m_x100) AS load_average_15m_count,
       min((load_average_15m_x100::float8 / 100)::real) AS load_average_15m_min,
       max((load_average_15m_x100::float8 / 100)::real) AS load_average_15m_max,
       sum(uptime_seconds::float8) AS uptime_seconds_sum,
       count(uptime_seconds) AS uptime_seconds_count,
       min(uptime_seconds) AS uptime_seconds_min,
       max(uptime_seconds) AS uptime_seconds_max,
       first(network_rx_bytes, collected_at) AS network_rx_bytes_first,
       min(collected_at) FILTER (WHERE network_rx_bytes IS NOT NULL) AS network_rx_bytes_first_time,
       last(network_rx_bytes, collected_at) AS network_rx_bytes_last,
       max(collected_at) FILTER (WHERE network_rx_bytes IS NOT NULL) AS network_rx_bytes_last_time,
       CASE WHEN last(network_rx_bytes, collected_at) >= first(network_rx_bytes, collected_at) THEN last(network_rx_bytes, collected_at) - first(network_rx_bytes, collected_at) ELSE last(network_rx_bytes, collected_at) END AS network_rx_bytes_increase,
       first(network_tx_bytes, collected_at) AS network_tx_bytes_first,
       min(collected_at) FILTER (WHERE network_tx_bytes IS NOT NULL) AS network_tx_bytes_first_time,
       last(network_tx_bytes, collected_at) AS network_tx_bytes_last,
       max(collected_at) FILTER (WHERE network_tx_bytes IS NOT NULL) AS network_tx_bytes_last_time,
       CASE WHEN last(network_tx_bytes, collected_at) >= first(network_tx_bytes, collected_at) THEN last(network_tx_bytes, collected_at) - first(network_tx_bytes, collected_at) ELSE last(network_tx_bytes, collected_at) END AS network_tx_bytes_increase
  FROM agent_metrics
 GROUP BY 1, 2
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS agent_metrics_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', bucket) AS bucket,
       agent_device_id,
       sum(samples)::bigint AS samples,
       sum(cpu_percent_sum) AS cpu_percent_sum,
       sum(cpu_percent_count)::bigint AS cpu_percent_count,
       min(cpu_percent_min) AS cpu_percent_min,
       max(cpu_percent_max) AS cpu_percent_max,
       sum(memory_used_gb_sum) AS memory_used_gb_sum,
       sum(memory_used_gb_count)::bigint AS memory_used_gb_count,
       min(memory_used_gb_min) AS memory_used_gb_min,
       max(memory_used_gb_max) AS memory_used_gb_max,
       sum(memory_percent_sum) AS memory_percent_sum,
       sum(memory_percent_count)::bigint AS memory_percent_count,
       min(memory_percent_min) AS memory_percent_min,
       max(memory_percent_max) AS memory_percent_max,
       sum(disk_used_gb_sum) AS disk_used_gb_sum,
       sum(disk_used_gb_count)::bigint AS disk_used_gb_count,
       min(disk_used_gb_min) AS disk_used_gb_min,
       max(disk_used_gb_max) AS disk_used_gb_max,
       sum(disk_percent_sum) AS disk_percent_sum,
       sum(disk_percent_count)::bigint AS disk_percent_count,
       min(disk_percent_min) AS disk_percent_min,
       max(disk_percent_max) AS disk_percent_max,
       sum(load_average_1m_sum) AS load_average_1m_sum,
       sum(load_average_1m_count)::bigint AS load_average_1m_count,
       min(load_average_1m_min) AS load_average_1m_min,
       max(load_average_1m_max) AS load_average_1m_max,
       sum(load_average_5m_sum) AS load_average_5m_sum,
       sum(load_average_5m_count)::bigint AS load_average_5m_count,
       min(load_average_5m_min) AS load_average_5m_min,
       max(load_average_5m_max) AS load_average_5m_max,
       sum(load_average_15m_sum) AS load_average_15m_sum,
       sum(load_average_15m_count)::bigint AS load_average_15m_count,
       min(load_average_15m_min) AS load_average_15m_min,
       max(load_average_15m_max) AS load_average_15m_max,
       sum(uptime_seconds_sum) AS uptime_seconds_sum,
       sum(uptime_seconds_count)::bigint AS uptime_seconds_count,
       min(uptime_seconds_min) AS uptime_seconds_min,
       max(uptime_seconds_max) AS uptime_seconds_max,
       first(network_rx_bytes_first, network_rx_bytes_first_time) AS network_rx_bytes_first,
       min(network_rx_bytes_first_time) AS network_rx_bytes_first_time,
       last(network_rx_bytes_last, network_rx_bytes_last_time) AS network_rx_bytes_last,
       max(network_rx_bytes_last_time) AS network_rx_bytes_last_time,
       CASE WHEN last(network_rx_bytes_last, network_rx_bytes_last_time) >= first(network_rx_bytes_first, network_rx_bytes_first_time) THEN last(network_rx_bytes_last, network_rx_bytes_last_time) - first(network_rx_bytes_first, network_rx_bytes_first_time) ELSE sum(network_rx_bytes_increase)::bigint END AS network_rx_bytes_increase,
       first(network_tx_bytes_first, network_tx_bytes_first_time) AS network_tx_bytes_first,
       min(network_tx_bytes_first_time) AS network_tx_bytes_first_time,
       last(network_tx_bytes_last, network_tx_bytes_last_time) AS network_tx_bytes_last,
       max(network_tx_bytes_last_time) AS network_tx_bytes_last_time,
       CASE WHEN last(network_tx_bytes_last, network_tx_bytes_last_time) >= first(network_tx_bytes_first, network_tx_bytes_first_time) THEN last(network_tx_bytes_last, network_tx_bytes_last_time) - first(network_tx_bytes_first, network_tx_bytes_first_time) ELSE sum(network_tx_bytes_increase)::bigint END AS network_tx_bytes_increase
  FROM agent_metrics_5m
 GROUP BY 1, 2
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS agent_metrics_1d
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 day', bucket) AS bucket,
       agent_device_id,
       sum(samples)::bigint AS samples,
       sum(cpu_percent_sum) AS cpu_percent_sum,
       sum(cpu_percent_count)::bigint AS cpu_percent_count,
       min(cpu_percent_min) AS cpu_percent_min,
       max(cpu_percent_max) AS cpu_percent_max,
       sum(memory_used_gb_sum) AS memory_used_gb_sum,
       sum(memory_used_gb_count)::bigint AS memory_used_gb_count,
       min(memory_used_gb_min) AS memory_used_gb_min,
       max(memory_used_gb_max) AS memory_used_gb_max,
       sum(memory_percent_sum) AS memory_percent_sum,
       sum(memory_percent_count)::bigint AS memory_percent_count,
       min(memory_percent_min) AS memory_percent_min,
       max(memory_percent_max) AS memory_percent_max,
       sum(disk_used_gb_sum) AS disk_used_gb_sum,
       sum(disk_used_gb_count)::bigint AS disk_used_gb_count,
       min(disk_used_gb_min) AS disk_used_gb_min,
       max(disk_used_gb_max) AS disk_used_gb_max,
       sum(disk_percent_sum) AS disk_percent_sum,
       sum(disk_percent_count)::bigint AS disk_percent_count,
       min(disk_percent_min) AS disk_percent_min,
       max(disk_percent_max) AS disk_percent_max,
       sum(load_average_1m_sum) AS load_average_1m_sum,
       sum(load_average_1m_count)::bigint AS load_average_1m_count,
       min(load_average_1m_min) AS load_average_1m_min,
       max(load_average_1m_max) AS load_average_1m_max,
       sum(load_average_5m_sum) AS load_average_5m_sum,
       sum(load_average_5m_count)::bigint AS load_average_5m_count,
       min(load_average_5m_min) AS load_average_5m_min,
       max(load_average_5m_max) AS load_average_5m_max,
       sum(load_average_15m_sum) AS load_average_15m_sum,
       sum(load_average_15m_count)::bigint AS load_average_15m_count,
       min(load_average_15m_min) AS load_average_15m_min,
       max(load_average_15m_max) AS load_average_15m_max,
       sum(uptime_seconds_sum) AS uptime_seconds_sum,
       sum(uptime_seconds_count)::bigint AS uptime_seconds_count,
       min(uptime_seconds_min) AS uptime_seconds_min,
       max(uptime_seconds_max) AS uptime_seconds_max,
       first(network_rx_bytes_first, network_rx_bytes_first_time) AS network_rx_bytes_first,
       min(network_rx_bytes_first_time) AS network_rx_bytes_first_time,
       last(network_rx_bytes_last, network_rx_bytes_last_time) AS network_rx_bytes_last,
       max(network_rx_bytes_last_time) AS network_rx_bytes_last_time,
       CASE WHEN last(network_rx_bytes_last, network_rx_bytes_last_time) >= first(network_rx_bytes_first, network_rx_bytes_first_time) THEN last(network_rx_bytes_last, network_rx_bytes_last_time) - first(network_rx_bytes_first, network_rx_bytes_first_time) ELSE sum(network_rx_bytes_increase)::bigint END AS network_rx_bytes_increase,
       first(network_tx_bytes_first, network_tx_bytes_first_time) AS network_tx_bytes_first,
       min(network_tx_bytes_first_time) AS network_tx_bytes_first_time,
       last(network_tx_bytes_last, network_tx_bytes_last_time) AS network_tx_bytes_last,
       max(network_tx_bytes_last_time) AS network_tx_bytes_last_time,
       CASE WHEN last(network_tx_bytes_last, network_tx_bytes_last_time) >= first(network_tx_bytes_first, network_tx_bytes_first_time) THEN last(network_tx_bytes_last, network_tx_bytes_last_time) - first(network_tx_bytes_first, network_tx_bytes_first_time) ELSE sum(network_tx_bytes_increase)::bigint END AS network_tx_bytes_increase
  FROM agent_metrics_1h
 GROUP BY 1, 2
WITH NO DATA;

-- Materialise the tiers (before their policies exist: a policy's first run would collide with
-- these refreshes) from what the raw table holds (nothing on a new database); older buckets
-- whose raw rows retention already dropped are gone with the old aggregates.
CALL refresh_continuous_aggregate('agent_metrics_5m', NULL, NULL);
CALL refresh_continuous_aggregate('agent_metrics_1h', NULL, NULL);
CALL refresh_continuous_aggregate('agent_metrics_1d', NULL, NULL);

-- Refresh policies as in 0031_rollup_tiers.tsl.sql.
SELECT add_continuous_aggregate_policy('agent_metrics_5m', start_offset => INTERVAL '3 days',
       end_offset => INTERVAL '5 minutes', schedule_interval => INTERVAL '1 minute', if_not_exists => true);
SELECT add_continuous_aggregate_policy('agent_metrics_1h', start_offset => INTERVAL '7 days',
       end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '10 minutes', if_not_exists => true);
SELECT add_continuous_aggregate_policy('agent_metrics_1d', start_offset => INTERVAL '60 days',
       end_offset => INTERVAL '1 day', schedule_interval => INTERVAL '1 hour', if_not_exists => true);

-- Retention per tier and the tiers' chunk intervals as the DBA had them (the raw table's
-- retention policy was never removed).
SELECT add_retention_policy(name, retention, if_not_exists => true)
  FROM rts_tier_levels WHERE name <> 'agent_metrics' AND retention IS NOT NULL;
SELECT set_chunk_time_interval(view_name::regclass, time_interval) FROM rts_scaled_storage_tier_chunks;
DROP TABLE rts_scaled_storage_tier_chunks;

-- Columnstore on the raw hypertable again (segment by device, order by time), after the DBA's age.
ALTER TABLE agent_metrics SET (timescaledb.compress, timescaledb.compress_segmentby = 'agent_device_id',
                               timescaledb.compress_orderby = 'collected_at DESC');
SELECT add_compression_policy('agent_metrics', compress_after, if_not_exists => true)
  FROM rts_tier_levels WHERE name = 'agent_metrics' AND compress_after IS NOT NULL;

