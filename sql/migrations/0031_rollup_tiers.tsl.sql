-- rts:no-transaction
-- Rollup tiers on the timescale (TSL) license: hierarchical continuous aggregates with the same
-- names and columns as the Apache edition's tables (0031_rollup_tiers.apache.sql), real-time
-- aggregation where the charts read (materialized_only = false), refresh and retention policies,
-- and columnstore compression of the raw hypertable (segment by device, order by time).
--
-- Known difference from the Apache edition: continuous aggregates cannot use window functions, so
-- a byte counter's _increase is last - first (exact while the counter does not reset inside the
-- bucket); a bucket with a reset counts last (5m) or the sum of its parts (1h, 1d): a lower bound.
-- first()/last() here do not skip NULL samples (no FILTER on them in a cagg); the agent sends
-- both counters on every sample.

CREATE MATERIALIZED VIEW agent_metrics_5m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '5 minutes', collected_at) AS bucket,
       agent_device_id,
       count(*) AS samples,
       sum(cpu_percent::float8) AS cpu_percent_sum,
       count(cpu_percent) AS cpu_percent_count,
       min(cpu_percent) AS cpu_percent_min,
       max(cpu_percent) AS cpu_percent_max,
       sum(memory_used_gb::float8) AS memory_used_gb_sum,
       count(memory_used_gb) AS memory_used_gb_count,
       min(memory_used_gb) AS memory_used_gb_min,
       max(memory_used_gb) AS memory_used_gb_max,
       sum(memory_percent::float8) AS memory_percent_sum,
       count(memory_percent) AS memory_percent_count,
       min(memory_percent) AS memory_percent_min,
       max(memory_percent) AS memory_percent_max,
       sum(disk_used_gb::float8) AS disk_used_gb_sum,
       count(disk_used_gb) AS disk_used_gb_count,
       min(disk_used_gb) AS disk_used_gb_min,
       max(disk_used_gb) AS disk_used_gb_max,
       sum(disk_percent::float8) AS disk_percent_sum,
       count(disk_percent) AS disk_percent_count,
       min(disk_percent) AS disk_percent_min,
       max(disk_percent) AS disk_percent_max,
       sum(load_average_1m::float8) AS load_average_1m_sum,
       count(load_average_1m) AS load_average_1m_count,
       min(load_average_1m) AS load_average_1m_min,
       max(load_average_1m) AS load_average_1m_max,
       sum(load_average_5m::float8) AS load_average_5m_sum,
       count(load_average_5m) AS load_average_5m_count,
       min(load_average_5m) AS load_average_5m_min,
       max(load_average_5m) AS load_average_5m_max,
       sum(load_average_15m::float8) AS load_average_15m_sum,
       count(load_average_15m) AS load_average_15m_count,
       min(load_average_15m) AS load_average_15m_min,
       max(load_average_15m) AS load_average_15m_max,
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

CREATE MATERIALIZED VIEW agent_metrics_1h
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

CREATE MATERIALIZED VIEW agent_metrics_1d
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

-- Refresh policies: each tier re-reads a window wide enough for late agent spool flushes.
SELECT add_continuous_aggregate_policy('agent_metrics_5m', start_offset => INTERVAL '3 days',
       end_offset => INTERVAL '5 minutes', schedule_interval => INTERVAL '1 minute');
SELECT add_continuous_aggregate_policy('agent_metrics_1h', start_offset => INTERVAL '7 days',
       end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '10 minutes');
SELECT add_continuous_aggregate_policy('agent_metrics_1d', start_offset => INTERVAL '60 days',
       end_offset => INTERVAL '1 day', schedule_interval => INTERVAL '1 hour');

-- Retention policies per level (the defaults of rts_tier_levels).
SELECT add_retention_policy('agent_metrics', INTERVAL '30 days');
SELECT add_retention_policy('agent_metrics_5m', INTERVAL '180 days');
SELECT add_retention_policy('agent_metrics_1h', INTERVAL '730 days');

-- Columnstore on the raw hypertable: one segment per device, ordered by time, after 7 days.
ALTER TABLE agent_metrics SET (timescaledb.compress, timescaledb.compress_segmentby = 'agent_device_id',
                               timescaledb.compress_orderby = 'collected_at DESC');
SELECT add_compression_policy('agent_metrics', INTERVAL '7 days');
UPDATE rts_tier_levels SET compress_after = INTERVAL '7 days' WHERE name = 'agent_metrics';
