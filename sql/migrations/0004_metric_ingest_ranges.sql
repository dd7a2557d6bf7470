-- The contract between ingestion and the rollup tiers: every flush that commits metric rows
-- also records, in the same transaction, the per-device time range it wrote. The tiers job
-- (apache edition) consumes these rows to re-aggregate exactly the affected buckets, so late
-- data (an agent replaying hours of spool) is never missing from the tiers.
CREATE TABLE metric_ingest_ranges (
    id              BIGSERIAL PRIMARY KEY,
    agent_device_id UUID        NOT NULL,
    range_start     TIMESTAMPTZ NOT NULL,
    range_end       TIMESTAMPTZ NOT NULL,  -- inclusive: the newest collected_at written
    row_count       INTEGER     NOT NULL,
    committed_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (range_end >= range_start)
);

CREATE INDEX idx_metric_ingest_ranges_start ON metric_ingest_ranges (range_start);
