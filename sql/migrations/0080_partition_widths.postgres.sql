-- Plain PostgreSQL (the postgres edition): how wide each level's partitions are, in the level's
-- row of the tier catalog, so the DBA's `rts-monitor tiers set-chunk-interval` means the same as on
-- TimescaleDB (new partitions get the new width; existing ones keep theirs). The same widths as
-- the hypertables' chunks: raw a day, 5m a week, 1h 30 days, 1d a year.
ALTER TABLE rts_tier_levels
    ADD COLUMN partition_interval interval CHECK (partition_interval IS NULL OR partition_interval >= INTERVAL '1 hour');

UPDATE rts_tier_levels SET partition_interval = CASE name
    WHEN 'agent_metrics' THEN INTERVAL '1 day'
    WHEN 'agent_metrics_5m' THEN INTERVAL '7 days'
    WHEN 'agent_metrics_1h' THEN INTERVAL '30 days'
    WHEN 'agent_metrics_1d' THEN INTERVAL '365 days' END;
