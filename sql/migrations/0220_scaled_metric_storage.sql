-- Metric values stored as integers at the agent's precision instead of REAL, so TimescaleDB's
-- columnstore compresses them with delta-of-delta instead of Gorilla (docs/schema.md, "Compression
-- on realistic agent data"): a one-decimal value is not exact in binary, so every change of a
-- noisy gauge cost Gorilla 2.5-3.5 bytes, against 0.4-1.7 as a scaled integer. The unit stays
-- in the name: cpu_percent_x10 = 234 is 23.4 %. What the agent measures is kept whole: psutil
-- gives percentages with one decimal, the agent sends GB with three and load averages with two
-- (the kernel's own precision), and the API rounds to exactly that (ingest/validate.py).
--
-- Readers use the view agent_metric_values: the same columns, names and REAL values the table
-- had, so every query, the history API and the alert evaluator read exactly what they read
-- before. Writers (the ingest COPY) write the scaled integers.
--
-- Same statements on every edition: ALTER ... TYPE works on an uncompressed hypertable (Apache)
-- and on a declaratively partitioned table (postgres, propagated to every partition). The
-- timescale-license edition replaces this file (0220_scaled_metric_storage.tsl.sql): its
-- compression and continuous aggregates must be taken down and rebuilt around the change.

ALTER TABLE agent_metrics DROP CONSTRAINT valid_percentages;

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
