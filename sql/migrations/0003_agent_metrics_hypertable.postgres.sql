-- Plain PostgreSQL (no TimescaleDB: Aurora, RDS): the postgres edition's form of this step.
-- agent_metrics becomes a declaratively partitioned table, range by collected_at, one partition
-- per day (the hypertable's chunk interval), with the same columns, primary key and check as
-- 0002's table, which this replaces (created by 0002 in the same run, so still empty).
--
-- The DEFAULT partition catches a sample for a day that has no partition yet (an agent replaying
-- an old spool, a backfill): it is stored, never refused. The partitions job (tiers.partitions,
-- rts_partitions_maintain in sql/repeatable/postgres/partitions.sql) makes the coming days'
-- partitions ahead and moves such rows into a partition of their own day; retention then drops
-- whole partitions. Partitions are created by 0080 and the job, not here.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM agent_metrics) THEN
        RAISE EXCEPTION 'agent_metrics already holds rows; the postgres edition creates it empty';
    END IF;
END
$$;

DROP TABLE agent_metrics;

CREATE TABLE agent_metrics (
    agent_device_id UUID NOT NULL,
    collected_at TIMESTAMPTZ NOT NULL,

    cpu_percent REAL,
    memory_used_gb REAL,
    memory_percent REAL,
    disk_used_gb REAL,
    disk_percent REAL,

    load_average_1m REAL,
    load_average_5m REAL,
    load_average_15m REAL,
    uptime_seconds BIGINT,

    network_rx_bytes BIGINT,
    network_tx_bytes BIGINT,

    CONSTRAINT agent_metrics_pkey PRIMARY KEY (agent_device_id, collected_at),
    CONSTRAINT valid_percentages CHECK (
        cpu_percent >= 0 AND cpu_percent <= 100 AND
        memory_percent >= 0 AND memory_percent <= 100 AND
        disk_percent >= 0 AND disk_percent <= 100
    )
) PARTITION BY RANGE (collected_at);

CREATE TABLE agent_metrics_default PARTITION OF agent_metrics DEFAULT;
