-- History queries look up the not-yet-refreshed ingest ranges of the devices they chart (late
-- rows are read from raw until the tiers' refresh consumes them): one index probe per device
-- instead of scanning every pending range. One row per device per flush: negligible ingest cost.
CREATE INDEX idx_metric_ingest_ranges_device ON metric_ingest_ranges (agent_device_id, range_start);
