-- name: session_start
INSERT INTO console_sessions (token_hash, user_id, role, business_id, source, csrf_token, expires_at,
                              address, user_agent)
VALUES (%(token_hash)s, %(user_id)s, %(role)s, %(business_id)s, %(source)s, %(csrf_token)s,
        now() + make_interval(secs => %(absolute_seconds)s), %(address)s, %(user_agent)s)
RETURNING id, user_id, role, business_id, source, csrf_token, created_at, last_seen_at, expires_at,
          (SELECT email FROM users WHERE id = %(user_id)s) AS email,
          (SELECT business_name FROM businesses WHERE id = %(business_id)s) AS business_name

-- name: session_resolve
-- The live session of a cookie, in one round trip: not signed out, within its absolute and idle
-- limits, and its user (when the portal's users table has the row) still active and not deleted.
-- last_seen_at is moved only when it is more than touch_seconds old (no write per request).
WITH s AS (
    SELECT s.*
      FROM console_sessions s
      LEFT JOIN users u ON u.id = s.user_id
     WHERE s.token_hash = %(token_hash)s
       AND s.ended_at IS NULL
       AND s.expires_at > now()
       AND s.last_seen_at > now() - make_interval(secs => %(idle_seconds)s)
       AND (u.id IS NULL OR (u.is_active IS NOT FALSE AND u.soft_delete IS NOT TRUE))
), touched AS (
    UPDATE console_sessions c SET last_seen_at = now()
      FROM s
     WHERE c.id = s.id AND s.last_seen_at < now() - make_interval(secs => %(touch_seconds)s)
    RETURNING c.last_seen_at
)
SELECT s.id, s.user_id, s.role, s.business_id, s.source, s.csrf_token, s.created_at, s.expires_at,
       coalesce((SELECT last_seen_at FROM touched), s.last_seen_at) AS last_seen_at,
       (SELECT email FROM users WHERE id = s.user_id) AS email,
       (SELECT business_name FROM businesses WHERE id = s.business_id) AS business_name
  FROM s

-- name: session_alive
-- Whether a session is still live, without counting as use (an open live stream asks this).
SELECT 1 AS ok
  FROM console_sessions s
  LEFT JOIN users u ON u.id = s.user_id
 WHERE s.token_hash = %(token_hash)s AND s.ended_at IS NULL AND s.expires_at > now()
   AND s.last_seen_at > now() - make_interval(secs => %(idle_seconds)s)
   AND (u.id IS NULL OR (u.is_active IS NOT FALSE AND u.soft_delete IS NOT TRUE))

-- name: session_end
UPDATE console_sessions SET ended_at = now() WHERE token_hash = %(token_hash)s AND ended_at IS NULL

-- name: sign_in_failures
-- Failed password sign-ins within the window, for the submitted account and for the address.
SELECT (SELECT count(*) FROM console_sign_in_attempts
         WHERE account = %(account)s AND NOT succeeded
           AND at > now() - make_interval(secs => %(window_seconds)s)) AS account_failures,
       (SELECT count(*) FROM console_sign_in_attempts
         WHERE address = %(address)s AND NOT succeeded
           AND at > now() - make_interval(secs => %(window_seconds)s)) AS address_failures,
       (SELECT min(at) FROM console_sign_in_attempts
         WHERE (account = %(account)s OR address = %(address)s) AND NOT succeeded
           AND at > now() - make_interval(secs => %(window_seconds)s)) AS oldest_failure

-- name: sign_in_record
INSERT INTO console_sign_in_attempts (account, address, succeeded)
VALUES (%(account)s, %(address)s, %(succeeded)s)

-- name: sign_in_candidates
-- Portal users with this e-mail (case-insensitive; the portal does not enforce uniqueness, so a
-- few rows are checked). Deleted users and deleted businesses never sign in; inactive users are
-- returned so that their password is checked like anyone's (same time) and then refused.
SELECT u.id, u.role, u.business_id, u.password_hash,
       (u.is_active IS NOT FALSE AND (b.id IS NULL OR (b.soft_delete IS NOT TRUE AND b.is_active IS NOT FALSE)))
           AS active
  FROM users u
  LEFT JOIN businesses b ON b.id = u.business_id
 WHERE lower(u.email) = lower(%(email)s)
   AND u.soft_delete IS NOT TRUE
 ORDER BY u.is_active DESC NULLS LAST, u.created_at DESC
 LIMIT 3

-- name: cleanup
-- Housekeeping (console/jobs.py): sessions a day past their end, attempts a day past any window.
WITH sessions AS (
    DELETE FROM console_sessions
     WHERE coalesce(ended_at, expires_at) < now() - interval '1 day'
        OR last_seen_at < now() - interval '1 day' - make_interval(secs => %(idle_seconds)s)
    RETURNING 1
), attempts AS (
    DELETE FROM console_sign_in_attempts
     WHERE at < now() - greatest(interval '1 day', make_interval(secs => %(window_seconds)s))
    RETURNING 1
)
SELECT (SELECT count(*) FROM sessions) AS sessions, (SELECT count(*) FROM attempts) AS attempts

-- name: fleet_filtered
-- Shared CTE (included below): the agents a fleet page may show, with their health and open
-- alerts, after every filter but health. Health: disabled and offline as the device status says;
-- otherwise critical (status error, or an open critical alert), warning (an open warning alert)
-- or online. Tenancy: %(scope)s is the caller's business (NULL for MSP staff).
filtered AS (
    SELECT d.id, d.device_name, d.hostname, d.business_id, d.service_location_id, d.status, d.os_type,
           d.os_version, d.agent_version, d.last_heartbeat, d.last_metrics_received, d.monitoring_enabled,
           host(d.ip_address) AS ip, b.business_name, l.location_name,
           greatest(d.last_heartbeat, d.last_metrics_received) AS last_seen,
           CASE WHEN d.status = 'disabled' THEN 'disabled'
                WHEN d.status = 'offline' THEN 'offline'
                WHEN d.status = 'error' OR a.worst = 2 THEN 'critical'
                WHEN a.worst = 1 THEN 'warning'
                ELSE 'online' END AS health,
           coalesce(a.open, 0) AS open_alerts
      FROM agent_devices d
      JOIN businesses b ON b.id = d.business_id
      LEFT JOIN service_locations l ON l.id = d.service_location_id
      LEFT JOIN (SELECT h.agent_device_id, count(*) AS open,
                        max(CASE h.severity WHEN 'critical' THEN 2 WHEN 'warning' THEN 1 ELSE 0 END) AS worst
                   FROM agent_alert_history h
                  WHERE h.status IN ('active', 'acknowledged')
                  GROUP BY h.agent_device_id) a ON a.agent_device_id = d.id
     WHERE d.soft_delete = false
       AND (%(scope)s::uuid IS NULL OR d.business_id = %(scope)s::uuid)
       AND (%(business_id)s::uuid IS NULL OR d.business_id = %(business_id)s::uuid)
       AND (%(location_id)s::uuid IS NULL OR d.service_location_id = %(location_id)s::uuid)
       AND (%(os)s::text IS NULL OR d.os_type = %(os)s::text)
       AND (%(q)s::text IS NULL OR d.device_name ILIKE %(q)s::text OR d.hostname ILIKE %(q)s::text
            OR host(d.ip_address) ILIKE %(q)s::text)
)

-- name: fleet_page
-- One page of the fleet in display order ({order} comes from a whitelist in console/fleet.py),
-- then the display columns and the newest metric row of just those agents: the same bounded
-- LATERAL probe as the fleet API (devices/queries.sql fleet_page), never a history scan. The
-- sort carries only its keys (measured at 10,000 agents: sorting whole rows for page 50 took
-- 3x as long).
WITH
-- include: fleet_filtered
, page AS (
    SELECT f.id, f.health, f.open_alerts
      FROM filtered f
     WHERE (%(healths)s::text[] IS NULL OR f.health = ANY(%(healths)s::text[]))
     ORDER BY {order}
     LIMIT %(limit)s OFFSET %(offset)s
)
SELECT f.*, m.collected_at AS metrics_at, m.cpu_percent, m.memory_percent, m.disk_percent,
       greatest(f.last_seen, m.collected_at) AS seen_at
  FROM (SELECT d.id, d.device_name, d.hostname, d.business_id, d.service_location_id, d.status, d.os_type,
               d.os_version, d.agent_version, d.monitoring_enabled, host(d.ip_address) AS ip, b.business_name,
               l.location_name, greatest(d.last_heartbeat, d.last_metrics_received) AS last_seen, p.health,
               p.open_alerts
          FROM page p
          JOIN agent_devices d ON d.id = p.id
          JOIN businesses b ON b.id = d.business_id
          LEFT JOIN service_locations l ON l.id = d.service_location_id) f
  LEFT JOIN LATERAL (
        SELECT am.collected_at, am.cpu_percent, am.memory_percent, am.disk_percent
          FROM agent_metric_values am
         WHERE am.agent_device_id = f.id
           AND am.collected_at > now() - make_interval(hours => %(lookback_hours)s)
         ORDER BY am.collected_at DESC
         LIMIT 1
       ) m ON true
 ORDER BY {order}

-- name: fleet_counts
-- Agents per business, location and health: the counts by health and the group headers' sizes
-- from one hashed pass (a window over the page query would sort all agents once more).
WITH
-- include: fleet_filtered
SELECT business_id, service_location_id, health, count(*) AS n
  FROM filtered
 GROUP BY business_id, service_location_id, health

-- name: fleet_ids
-- Every agent matching the filters (bulk selection "all matching"), bounded.
WITH
-- include: fleet_filtered
SELECT id FROM filtered
 WHERE (%(healths)s::text[] IS NULL OR health = ANY(%(healths)s::text[]))
 ORDER BY id
 LIMIT %(limit)s

-- name: business_options
SELECT id, business_name FROM businesses
 WHERE soft_delete IS NOT TRUE AND (%(scope)s::uuid IS NULL OR id = %(scope)s::uuid)
 ORDER BY business_name, id

-- name: location_options
SELECT l.id, l.location_name, l.business_id FROM service_locations l
 WHERE l.soft_delete IS NOT TRUE AND l.business_id = %(business_id)s
   AND (%(scope)s::uuid IS NULL OR l.business_id = %(scope)s::uuid)
 ORDER BY l.location_name, l.id

-- name: os_options
SELECT DISTINCT os_type FROM agent_devices
 WHERE soft_delete = false AND (%(scope)s::uuid IS NULL OR business_id = %(scope)s::uuid)
 ORDER BY os_type

-- name: admin_businesses
-- Every business with its agents counted by health (businesses without agents included).
WITH
-- include: fleet_filtered
SELECT b.id, b.business_name, (b.is_active IS NOT FALSE) AS active,
       (SELECT count(*) FROM service_locations l WHERE l.business_id = b.id AND l.soft_delete IS NOT TRUE)
           AS locations,
       count(f.id) AS total,
       count(*) FILTER (WHERE f.health = 'online') AS online,
       count(*) FILTER (WHERE f.health = 'warning') AS warning,
       count(*) FILTER (WHERE f.health = 'critical') AS critical,
       count(*) FILTER (WHERE f.health = 'offline') AS offline,
       count(*) FILTER (WHERE f.health = 'disabled') AS disabled
  FROM businesses b
  LEFT JOIN filtered f ON f.business_id = b.id
 WHERE b.soft_delete IS NOT TRUE
 GROUP BY b.id, b.business_name, b.is_active
 ORDER BY b.business_name, b.id

-- name: status_timeline
-- The device's status at %(start)s (its last change before then) and every change up to %(end)s.
(SELECT changed_at, from_status, to_status, reason FROM agent_status_transitions
  WHERE agent_device_id = %(agent_id)s AND changed_at < %(start)s
  ORDER BY changed_at DESC LIMIT 1)
UNION ALL
(SELECT changed_at, from_status, to_status, reason FROM agent_status_transitions
  WHERE agent_device_id = %(agent_id)s AND changed_at >= %(start)s AND changed_at < %(end)s
  ORDER BY changed_at LIMIT %(limit)s)
ORDER BY changed_at

-- name: device_status
-- The status a device has now and since when (the timeline's last segment when nothing changed).
SELECT status, coalesce(status_changed_at, created_at) AS since, created_at
  FROM agent_devices WHERE id = %(agent_id)s

-- name: device_extras
-- What the device page shows beyond the agent detail (devices/service.get_agent).
SELECT d.metrics_interval_seconds, d.heartbeat_interval_seconds, d.agent_last_updated
  FROM agent_devices d WHERE d.id = %(agent_id)s

-- name: visible_agents
-- The subset of %(ids)s the caller may see (live subscriptions).
SELECT id FROM agent_devices
 WHERE id = ANY(%(ids)s::uuid[]) AND soft_delete = false
   AND (%(scope)s::uuid IS NULL OR business_id = %(scope)s::uuid)

-- name: live_latest
-- For the live channel: each agent's status, business and newest sample, with the previous
-- sample's counters so byte rates can be given (bounded LATERAL probe, as fleet_page).
SELECT d.id, d.business_id, d.status, d.last_heartbeat, d.last_metrics_received, m.*
  FROM agent_devices d
  LEFT JOIN LATERAL (
        SELECT r.collected_at, r.cpu_percent, r.memory_used_gb, r.memory_percent, r.disk_used_gb,
               r.disk_percent, r.load_average_1m, r.load_average_5m, r.load_average_15m, r.uptime_seconds,
               r.network_rx_bytes, r.network_tx_bytes,
               lead(r.collected_at) OVER w AS prev_at, lead(r.network_rx_bytes) OVER w AS prev_rx,
               lead(r.network_tx_bytes) OVER w AS prev_tx
          FROM (SELECT * FROM agent_metric_values am
                 WHERE am.agent_device_id = d.id
                   AND am.collected_at > now() - make_interval(hours => %(lookback_hours)s)
                 ORDER BY am.collected_at DESC LIMIT 2) r
        WINDOW w AS (ORDER BY r.collected_at DESC)
        ORDER BY r.collected_at DESC
        LIMIT 1
       ) m ON true
 WHERE d.id = ANY(%(ids)s::uuid[]) AND d.soft_delete = false

-- name: ticket_titles
-- The linked tickets of the inbox's episodes (service_requests the evaluator created), by id.
SELECT id, title FROM service_requests WHERE id = ANY(%(ids)s::uuid[])

-- name: user_emails
-- Who requested, approved, acknowledged: portal users by id (a token's user may have no row).
SELECT id, email FROM users WHERE id = ANY(%(ids)s::uuid[])

-- name: agent_name
SELECT d.id, d.device_name, d.business_id
  FROM agent_devices d
 WHERE d.id = %(id)s AND NOT d.soft_delete AND (%(scope)s::uuid IS NULL OR d.business_id = %(scope)s::uuid)

-- name: approvers
-- Who may approve a command awaiting approval: active staff other than its requester.
SELECT email FROM users
 WHERE role IN ('admin', 'technician') AND is_active IS NOT FALSE AND soft_delete IS NOT TRUE
   AND id <> %(requester)s
 ORDER BY email
 LIMIT 20

-- name: relation_estimate
-- The planner's row estimate of a table and its chunks or partitions (no scan); -1: never analysed.
SELECT coalesce((SELECT sum(greatest(c.reltuples, 0)) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                  WHERE i.inhparent = to_regclass(%(name)s)), 0)
       + coalesce((SELECT greatest(reltuples, 0) FROM pg_class WHERE oid = to_regclass(%(name)s)), 0) AS estimate

-- name: cagg_table
-- edition: tsl
-- The hypertable holding a continuous aggregate's rows.
SELECT format('%%I.%%I', materialization_hypertable_schema, materialization_hypertable_name) AS name
  FROM timescaledb_information.continuous_aggregates WHERE view_name = %(name)s

-- name: ingest_rate
-- Rows written per second, per minute of the last hour, from the ingest flushes' own records.
SELECT extract(epoch FROM date_trunc('minute', committed_at))::bigint AS t, sum(row_count) / 60.0 AS rows_per_s
  FROM metric_ingest_ranges
 WHERE committed_at >= now() - interval '1 hour'
 GROUP BY 1 ORDER BY 1

-- name: evaluation_runs
-- The alert evaluator's cycles of the last hour: how long each took, and how many it looked at.
SELECT extract(epoch FROM started_at)::float8 AS t, duration_ms, pairs, error
  FROM alert_evaluation_runs
 WHERE started_at >= now() - interval '1 hour' AND finished_at IS NOT NULL
 ORDER BY started_at
 LIMIT 5000

-- name: last_evaluation
SELECT started_at, duration_ms, error, instance, scope,
       (SELECT count(*) FROM alert_evaluation_runs
         WHERE error IS NOT NULL AND started_at >= now() - interval '1 day') AS failures_today
  FROM alert_evaluation_runs WHERE finished_at IS NOT NULL ORDER BY started_at DESC LIMIT 1

-- name: tsl_job_durations
-- edition: tsl
SELECT job_id, extract(epoch FROM last_run_duration) * 1000 AS duration_ms FROM timescaledb_information.job_stats

-- name: tsl_job_errors
-- edition: tsl
SELECT DISTINCT ON (job_id) job_id, err_message FROM timescaledb_information.job_errors ORDER BY job_id, finish_time DESC

-- name: apache_job_durations
-- edition: apache postgres
SELECT name, last_duration_ms AS duration_ms FROM rts_tier_jobs

-- name: level_rows
-- Rows of one level (the raw table or a tier) older than ``before`` ('infinity': all), and the
-- oldest; CASE evaluates only the branch of the level asked for.
SELECT CASE %(level)s
         WHEN 'agent_metrics' THEN (SELECT count(*) FROM agent_metrics WHERE collected_at < %(before)s)
         WHEN 'agent_metrics_5m' THEN (SELECT count(*) FROM agent_metrics_5m WHERE bucket < %(before)s)
         WHEN 'agent_metrics_1h' THEN (SELECT count(*) FROM agent_metrics_1h WHERE bucket < %(before)s)
         WHEN 'agent_metrics_1d' THEN (SELECT count(*) FROM agent_metrics_1d WHERE bucket < %(before)s)
       END AS n,
       CASE %(level)s
         WHEN 'agent_metrics' THEN (SELECT min(collected_at) FROM agent_metrics)
         WHEN 'agent_metrics_5m' THEN (SELECT min(bucket) FROM agent_metrics_5m)
         WHEN 'agent_metrics_1h' THEN (SELECT min(bucket) FROM agent_metrics_1h)
         WHEN 'agent_metrics_1d' THEN (SELECT min(bucket) FROM agent_metrics_1d)
       END AS oldest

-- name: tier_settings
SELECT name, retention, compress_after FROM rts_tier_levels

-- name: device_search
-- Devices by name or hostname for the command console's chooser (the caller's business only).
SELECT d.id, d.device_name, d.hostname, b.business_name
  FROM agent_devices d JOIN businesses b ON b.id = d.business_id
 WHERE NOT d.soft_delete AND (%(scope)s::uuid IS NULL OR d.business_id = %(scope)s::uuid)
   AND (d.device_name ILIKE %(pattern)s OR d.hostname ILIKE %(pattern)s)
 ORDER BY d.device_name, d.id
 LIMIT 20
