-- Rollup tiers (issue 5): what the DBA controls and the maintenance jobs share, on both editions.
--
-- rts_tier_levels: one row per level (the raw hypertable and each tier): its bucket width, the
-- relation it is built from, its retention (NULL = keep forever), and on the apache edition the
-- watermark (every bucket before it is materialised) and the horizon retention dropped up to.
-- compress_after applies to the raw hypertable on the timescale (TSL) license only.
CREATE TABLE rts_tier_levels (
    name            text PRIMARY KEY,
    position        smallint    NOT NULL UNIQUE,
    bucket_width    interval,                -- NULL for the raw table
    source          text,                    -- NULL for the raw table
    retention       interval CHECK (retention IS NULL OR retention > INTERVAL '0'),
    compress_after  interval CHECK (compress_after IS NULL OR compress_after > INTERVAL '0'),
    watermark       timestamptz,             -- apache: buckets < watermark are materialised
    dropped_before  timestamptz,             -- apache: retention dropped chunks before this
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Defaults: raw 1-minute data for 30 days, 5-minute buckets for 180 days, hourly for 2 years,
-- daily forever. At 10-second reporting raw is ~260 MB per 1,000 devices per day, so 30 days of
-- raw is the dominant cost; charts older than a month read the tiers anyway.
INSERT INTO rts_tier_levels (name, position, bucket_width, source, retention) VALUES
    ('agent_metrics',    0, NULL,                 NULL,               INTERVAL '30 days'),
    ('agent_metrics_5m', 1, INTERVAL '5 minutes', 'agent_metrics',    INTERVAL '180 days'),
    ('agent_metrics_1h', 2, INTERVAL '1 hour',    'agent_metrics_5m', INTERVAL '730 days'),
    ('agent_metrics_1d', 3, INTERVAL '1 day',     'agent_metrics_1h', NULL);

-- Last/next run and failures of the project's own maintenance jobs (apache edition); on the
-- timescale license the policies' own job stats are shown instead.
CREATE TABLE rts_tier_jobs (
    name                 text PRIMARY KEY,
    interval_seconds     integer     NOT NULL,
    last_started_at      timestamptz,
    last_finished_at     timestamptz,
    last_status          text CHECK (last_status IN ('running', 'success', 'failed')),
    last_error           text,
    last_duration_ms     integer,
    last_rows            bigint,
    total_runs           bigint      NOT NULL DEFAULT 0,
    total_failures       bigint      NOT NULL DEFAULT 0,
    consecutive_failures integer     NOT NULL DEFAULT 0,
    next_run_at          timestamptz
);
