-- Plain PostgreSQL (the postgres edition): the tiers get the time index TimescaleDB gives every
-- hypertable on the apache edition (create_hypertable's default `<table>_bucket_idx`, bucket DESC).
-- The refresh reads and replaces a tier's newest buckets by bucket range (tiers.maintenance: the
-- 1h tier's new hour from the 5m tier, the 1d tier's from the 1h tier); without it each pass scanned
-- the whole partition (a week of 5m rows: 20M rows at 10,000 devices). Partitions made later get it
-- on ATTACH.
CREATE INDEX agent_metrics_5m_bucket_idx ON agent_metrics_5m (bucket DESC);
CREATE INDEX agent_metrics_1h_bucket_idx ON agent_metrics_1h (bucket DESC);
CREATE INDEX agent_metrics_1d_bucket_idx ON agent_metrics_1d (bucket DESC);
