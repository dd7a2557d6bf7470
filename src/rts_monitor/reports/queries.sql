-- name: availability
-- One row per device in scope: its measured time, downtime, excluded time and outages over the
-- period, as multiranges (PostgreSQL 14+), so overlaps are never counted twice:
--   seen     = from the device's first status transition on (before it, it was being installed)
--   down     = time in 'offline' (error is reachable: counted as up, and reported apart)
--   excluded = time 'disabled' (monitoring paused) + maintenance windows of the device, its
--              location or its whole business
--   measured = seen - excluded;  counted down = down - excluded
-- An outage is one offline stretch with counted downtime; it has recovered when it ends before
-- the period does. Everything is clipped to [from, min(to, now)).
WITH period AS (
    SELECT tstzrange(%(from)s::timestamptz, least(%(to)s::timestamptz, now()), '[)') AS p
),
dev AS (
    SELECT d.id, d.device_name, d.hostname, d.business_id, b.business_name, d.service_location_id,
           l.location_name
      FROM agent_devices d
      JOIN businesses b ON b.id = d.business_id
      LEFT JOIN service_locations l ON l.id = d.service_location_id
     WHERE NOT d.soft_delete
       AND (%(scope)s::uuid IS NULL OR d.business_id = %(scope)s::uuid)
       AND (%(business_id)s::uuid IS NULL OR d.business_id = %(business_id)s::uuid)
       AND (%(location_id)s::uuid IS NULL OR d.service_location_id = %(location_id)s::uuid)
       AND (%(agent_id)s::uuid IS NULL OR d.id = %(agent_id)s::uuid)
),
seg AS (
    SELECT t.agent_device_id AS device_id, t.to_status AS status,
           tstzrange(t.changed_at, lead(t.changed_at) OVER w, '[)') AS r
      FROM agent_status_transitions t
      JOIN dev ON dev.id = t.agent_device_id
     WHERE t.changed_at < (SELECT upper(p) FROM period)
    WINDOW w AS (PARTITION BY t.agent_device_id ORDER BY t.changed_at, t.id)
),
states AS (
    SELECT s.device_id,
           range_agg(s.r) * tstzmultirange(period.p) AS seen,
           coalesce(range_agg(s.r) FILTER (WHERE s.status = 'offline'), '{}') * tstzmultirange(period.p) AS down,
           coalesce(range_agg(s.r) FILTER (WHERE s.status = 'error'), '{}') * tstzmultirange(period.p) AS error,
           coalesce(range_agg(s.r) FILTER (WHERE s.status = 'disabled'), '{}') * tstzmultirange(period.p)
               AS disabled
      FROM seg s, period
     WHERE NOT isempty(s.r)
     GROUP BY s.device_id, period.p
),
maint AS (
    SELECT dev.id AS device_id,
           coalesce(range_agg(tstzrange(w.starts_at, w.ends_at, '[)')), '{}') * tstzmultirange(period.p) AS m
      FROM dev
      JOIN alert_maintenance_windows w
        ON w.business_id = dev.business_id
       AND (w.agent_device_id = dev.id
            OR (w.agent_device_id IS NULL AND (w.service_location_id IS NULL
                                               OR w.service_location_id = dev.service_location_id)))
      CROSS JOIN period
     WHERE w.starts_at < upper(period.p) AND w.ends_at > lower(period.p)
     GROUP BY dev.id, period.p
),
judged AS (
    SELECT dev.*, coalesce(st.seen, '{}') AS seen, coalesce(st.down, '{}') AS down,
           -- what is excluded is excluded only where the device was measured at all
           coalesce(st.disabled, '{}') + coalesce(mt.m, '{}') * coalesce(st.seen, '{}') AS excluded,
           coalesce(st.disabled, '{}') AS disabled, coalesce(mt.m, '{}') * coalesce(st.seen, '{}') AS maintenance,
           coalesce(st.error, '{}') AS error
      FROM dev
      LEFT JOIN states st ON st.device_id = dev.id
      LEFT JOIN maint mt ON mt.device_id = dev.id
),
-- Each offline stretch, with the part of it that counts (outside exclusions). A stretch entirely
-- inside a maintenance window is no outage; one still going at the period's end has not recovered.
stretch AS (
    SELECT j.id AS device_id, x AS r,
           (SELECT coalesce(sum(extract(epoch FROM upper(y) - lower(y))), 0)
              FROM unnest(tstzmultirange(x) - j.excluded) y)::float8 AS counted_s
      FROM judged j, unnest(j.down) x
),
outage AS (
    SELECT s.device_id, count(*) AS outages, max(s.counted_s) AS longest_s,
           count(*) FILTER (WHERE upper(s.r) < upper(period.p)) AS recovered,
           sum(extract(epoch FROM upper(s.r) - lower(s.r))) FILTER (WHERE upper(s.r) < upper(period.p))::float8
               AS recovered_s
      FROM stretch s, period
     WHERE s.counted_s > 0
     GROUP BY s.device_id
)
SELECT j.id AS agent_id, j.device_name, j.hostname, j.business_id, j.business_name, j.service_location_id,
       j.location_name,
       (SELECT coalesce(sum(extract(epoch FROM upper(x) - lower(x))), 0)
          FROM unnest(j.seen - j.excluded) x)::float8 AS measured_s,
       (SELECT coalesce(sum(extract(epoch FROM upper(x) - lower(x))), 0)
          FROM unnest(j.down - j.excluded) x)::float8 AS down_s,
       (SELECT coalesce(sum(extract(epoch FROM upper(x) - lower(x))), 0)
          FROM unnest(j.error - j.excluded) x)::float8 AS error_s,
       (SELECT coalesce(sum(extract(epoch FROM upper(x) - lower(x))), 0) FROM unnest(j.disabled) x)::float8
           AS disabled_s,
       (SELECT coalesce(sum(extract(epoch FROM upper(x) - lower(x))), 0)
          FROM unnest(j.maintenance - j.disabled) x)::float8 AS maintenance_s,
       coalesce(o.outages, 0) AS outages, coalesce(o.longest_s, 0) AS longest_outage_s,
       coalesce(o.recovered, 0) AS recovered, coalesce(o.recovered_s, 0) AS recovered_s
  FROM judged j
  LEFT JOIN outage o ON o.device_id = j.id
 ORDER BY j.business_name, j.business_id, j.location_name NULLS LAST, j.service_location_id, j.device_name, j.id

-- name: alert_stats
-- Alert episodes that opened in the period, per business and severity: how many, how fast they
-- were acknowledged and resolved (means over those that were), and how many opened a ticket.
SELECT h.business_id, h.severity, count(*) AS episodes,
       avg(extract(epoch FROM h.acknowledged_at - h.triggered_at))
           FILTER (WHERE h.acknowledged_at IS NOT NULL)::float8 AS mean_time_to_acknowledge_seconds,
       avg(extract(epoch FROM h.resolved_at - h.triggered_at))
           FILTER (WHERE h.resolved_at IS NOT NULL)::float8 AS mean_time_to_resolve_seconds,
       count(*) FILTER (WHERE h.service_request_created IS NOT NULL) AS tickets
  FROM agent_alert_history h
  JOIN agent_devices d ON d.id = h.agent_device_id
 WHERE h.triggered_at >= %(from)s AND h.triggered_at < %(to)s
   AND NOT d.soft_delete
   AND (%(scope)s::uuid IS NULL OR h.business_id = %(scope)s::uuid)
   AND (%(business_id)s::uuid IS NULL OR h.business_id = %(business_id)s::uuid)
   AND (%(location_id)s::uuid IS NULL OR d.service_location_id = %(location_id)s::uuid)
   AND (%(agent_id)s::uuid IS NULL OR h.agent_device_id = %(agent_id)s::uuid)
 GROUP BY h.business_id, h.severity
 ORDER BY h.business_id, h.severity

-- name: business_visible
SELECT id FROM businesses WHERE id = %(id)s AND (%(scope)s::uuid IS NULL OR id = %(scope)s::uuid)

-- name: location_visible
SELECT id FROM service_locations WHERE id = %(id)s AND (%(scope)s::uuid IS NULL OR business_id = %(scope)s::uuid)
