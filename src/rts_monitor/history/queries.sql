-- name: business_in_scope
SELECT id FROM businesses
 WHERE id = %(id)s AND (%(scope)s::uuid IS NULL OR id = %(scope)s)

-- name: location_in_scope
SELECT id, business_id FROM service_locations
 WHERE id = %(id)s AND (%(scope)s::uuid IS NULL OR business_id = %(scope)s)

-- name: fleet_devices
-- Every (not deleted) device of a business, or of one of its locations.
SELECT id FROM agent_devices
 WHERE soft_delete = false
   AND business_id = %(business_id)s
   AND (%(location_id)s::uuid IS NULL OR service_location_id = %(location_id)s)

-- name: watermarks
-- Apache and postgres: each tier's watermark, and (on the 5m row) whether committed ingest ranges of these
-- devices reach below it, i.e. late rows the refresh has not re-aggregated yet.
SELECT name, watermark,
       name = 'agent_metrics_5m' AND EXISTS (
           SELECT 1 FROM metric_ingest_ranges p
            WHERE p.agent_device_id = ANY(%(devs)s) AND p.range_end >= %(lo)s
              AND p.range_start < least(%(hi)s, l.watermark)) AS pending
  FROM rts_tier_levels l WHERE bucket_width IS NOT NULL

-- name: cagg_watermarks
-- edition: tsl
-- Timescale license: where each continuous aggregate's materialised part ends (NULL: nothing yet;
-- see tiers/queries.sql cagg_watermark for why any negative watermark means that).
SELECT a.view_name AS name,
       CASE WHEN _timescaledb_functions.cagg_watermark(h.id) < 0 THEN NULL
            ELSE _timescaledb_functions.to_timestamp(_timescaledb_functions.cagg_watermark(h.id)) END AS watermark
  FROM timescaledb_information.continuous_aggregates a
  JOIN _timescaledb_catalog.hypertable h
    ON h.schema_name = a.materialization_hypertable_schema AND h.table_name = a.materialization_hypertable_name
 WHERE a.view_name IN ('agent_metrics_5m', 'agent_metrics_1h', 'agent_metrics_1d')

-- name: jit_off
SET LOCAL jit = off
