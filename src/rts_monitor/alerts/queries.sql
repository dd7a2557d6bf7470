-- name: begin_full_cycle
-- A full cycle excludes other cycles and the ingest hooks (transaction advisory lock). Planner:
-- the evaluate statement joins CTEs whose row estimates are guesses; with nested loops allowed a
-- bad guess turns a join of thousands of rows into a quadratic scan (measured: 5 s instead of
-- 0.1 s at 1,000 devices). Its per-device index probes are LATERAL, so they stay nested loops.
-- JIT off: the disabled-path costs would otherwise trigger seconds of JIT compilation.
SELECT pg_advisory_xact_lock(%(key)s), set_config('enable_nestloop', 'off', true), set_config('jit', 'off', true)

-- name: begin_device_cycle
-- An ingest hook only shares the lock: hooks run side by side, and wait at most for one cycle.
SELECT pg_advisory_xact_lock_shared(%(key)s), set_config('enable_nestloop', 'off', true),
       set_config('jit', 'off', true)

-- name: evaluate
-- One evaluation of every active rule of the given kinds over every (rule, device) pair, or only
-- the pairs of %(devices)s (the ingest hook). One statement, so it sees one snapshot and commits
-- atomically: open episodes, auto-resolve cleared ones, bump rule counters, enqueue outbox work.
-- Metric rules are judged in data time: the window ends at the device's newest sample and must be
-- covered by samples (first one within %(slack)s of its start, no gap above %(max_gap)s).
-- The pairs stay narrow (ids and numbers); names are joined only for the episodes that open.
WITH rules AS MATERIALIZED (
    SELECT r.id, r.business_id, r.agent_device_id, r.severity, r.kind, r.metric, r.operator, r.threshold,
           r.aggregation, r.service_name,
           coalesce(r.hysteresis, abs(r.threshold) * %(hyst_pct)s / 100.0) AS hyst,
           make_interval(mins => r.duration_minutes) AS win
      FROM agent_alerts r
     WHERE r.is_active AND NOT r.soft_delete AND r.kind = ANY(%(kinds)s::text[])
),
devices AS MATERIALIZED (
    SELECT d.id, d.business_id, coalesce(d.last_heartbeat, d.created_at) AS heard_at,
           EXISTS (SELECT 1 FROM alert_maintenance_windows w
                    WHERE w.business_id = d.business_id AND w.starts_at <= now() AND w.ends_at > now()
                      AND (w.service_location_id IS NULL OR w.service_location_id = d.service_location_id)
                      AND (w.agent_device_id IS NULL OR w.agent_device_id = d.id)) AS in_maintenance
      FROM agent_devices d
     WHERE d.alerts_enabled AND d.monitoring_enabled AND d.is_active AND NOT d.soft_delete
       AND (%(devices)s::uuid[] IS NULL OR d.id = ANY(%(devices)s::uuid[]))
       AND d.business_id IN (SELECT business_id FROM rules)
),
pairs AS MATERIALIZED (
    SELECT r.*, d.id AS device_id, d.in_maintenance, d.heard_at
      FROM rules r JOIN devices d ON d.id = r.agent_device_id AND d.business_id = r.business_id
    UNION ALL
    SELECT r.*, d.id, d.in_maintenance, d.heard_at
      FROM rules r JOIN devices d ON r.agent_device_id IS NULL AND d.business_id = r.business_id
),
mdev AS MATERIALIZED (
    SELECT device_id, max(win) AS win FROM pairs WHERE kind = 'metric' GROUP BY device_id
),
latest AS MATERIALIZED (
    -- Each device's newest sample: one backward probe of the primary key (LATERAL LIMIT 1).
    SELECT mdev.device_id, mdev.win, lm.collected_at AS latest
      FROM mdev
     CROSS JOIN LATERAL (SELECT m.collected_at FROM agent_metrics m
                          WHERE m.agent_device_id = mdev.device_id AND m.collected_at >= now() - %(stale)s::interval
                          ORDER BY m.collected_at DESC LIMIT 1) lm
),
samples AS MATERIALIZED (
    -- Each device's rows of its longest window, by one range probe of the primary key (LATERAL,
    -- OFFSET 0: never flattened into a join over a chunk scan); then, over all of them at once,
    -- each sample's gap to the previous one. Measured faster than one wider probe per device.
    SELECT r.*,
           r.collected_at - lag(r.collected_at) OVER (PARTITION BY r.device_id ORDER BY r.collected_at) AS gap
      FROM (SELECT l.device_id, l.latest, m.collected_at,
                   m.cpu_percent, m.memory_used_gb, m.memory_percent, m.disk_used_gb, m.disk_percent,
                   m.load_average_1m, m.load_average_5m, m.load_average_15m, m.uptime_seconds,
                   m.network_rx_bytes, m.network_tx_bytes
              FROM latest l
             CROSS JOIN LATERAL (
                SELECT * FROM agent_metrics m
                 WHERE m.agent_device_id = l.device_id
                   AND m.collected_at >= l.latest - l.win - %(slack)s::interval AND m.collected_at <= l.latest
                   AND m.collected_at >= now() - %(stale)s::interval - %(max_window)s::interval
                OFFSET 0) m) r
),
mwin AS (
    -- One row per metric (rule, device) pair; the rule's columns ride along (any_value: the same
    -- on every row of the group) so the pairs need not be joined a second time.
    SELECT p.id AS rule_id, p.device_id, any_value(p.business_id) AS business_id,
           any_value(p.severity) AS severity, any_value(p.in_maintenance) AS in_maintenance,
           any_value(p.operator) AS operator, any_value(p.threshold) AS threshold, any_value(p.hyst) AS hyst,
           any_value(p.aggregation) AS aggregation, any_value(p.win) AS win, min(s.latest) AS latest,
           count(v.v) AS n,
           min(s.collected_at) FILTER (WHERE v.v IS NOT NULL) AS first_at,
           max(s.gap) FILTER (WHERE s.collected_at > s.latest - p.win) AS max_gap,
           avg(v.v) AS v_avg, min(v.v) AS v_min, max(v.v) AS v_max
      FROM pairs p
      JOIN samples s ON s.device_id = p.device_id AND s.collected_at >= s.latest - p.win - %(slack)s::interval
      CROSS JOIN LATERAL (SELECT CASE p.metric
                WHEN 'cpu_percent' THEN s.cpu_percent::float8
                WHEN 'memory_used_gb' THEN s.memory_used_gb::float8
                WHEN 'memory_percent' THEN s.memory_percent::float8
                WHEN 'disk_used_gb' THEN s.disk_used_gb::float8
                WHEN 'disk_percent' THEN s.disk_percent::float8
                WHEN 'load_average_1m' THEN s.load_average_1m::float8
                WHEN 'load_average_5m' THEN s.load_average_5m::float8
                WHEN 'load_average_15m' THEN s.load_average_15m::float8
                WHEN 'uptime_seconds' THEN s.uptime_seconds::float8
                WHEN 'network_rx_bytes' THEN s.network_rx_bytes::float8
                WHEN 'network_tx_bytes' THEN s.network_tx_bytes::float8
            END AS v) v
     WHERE p.kind = 'metric'
     GROUP BY p.id, p.device_id
),
mval AS (
    SELECT w.*, w.latest - w.win AS since,
           CASE w.aggregation WHEN 'min' THEN w.v_min WHEN 'max' THEN w.v_max ELSE w.v_avg END AS agg,
           w.n >= 1 AND (w.win = interval '0' OR w.n >= 2)
             AND w.first_at <= w.latest - w.win + %(slack)s::interval
             AND coalesce(w.max_gap, interval '0') <= %(max_gap)s::interval AS covered
      FROM mwin w
),
sagg AS (
    SELECT p.id AS rule_id, p.device_id, any_value(p.business_id) AS business_id,
           any_value(p.severity) AS severity, any_value(p.in_maintenance) AS in_maintenance,
           any_value(p.win) AS win,
           count(s.id) AS down_any,
           count(s.id) FILTER (WHERE coalesce(s.last_state_change, s.last_checked) <= now() - p.win
                                 AND (NOT coalesce(rm.remedied, false) OR coalesce(s.last_state_change, s.last_checked)
                                                      <= now() - %(remediation_grace)s::interval)) AS down_long,
           string_agg(s.service_name, ', ' ORDER BY s.service_name)
               FILTER (WHERE coalesce(s.last_state_change, s.last_checked) <= now() - p.win
                         AND (NOT coalesce(rm.remedied, false) OR coalesce(s.last_state_change, s.last_checked)
                                              <= now() - %(remediation_grace)s::interval)) AS names,
           min(coalesce(s.last_state_change, s.last_checked)) AS since
      FROM pairs p
      LEFT JOIN agent_monitored_services s ON s.agent_device_id = p.device_id AND s.should_be_running
           AND coalesce(s.status, 'unknown') <> 'running'
           AND (p.service_name IS NULL OR s.service_name = p.service_name)
      -- A service auto-remediation restarts escalates only once it stayed down for the grace
      -- period (docs/services.md): the restart gets its chance first.
      LEFT JOIN LATERAL (SELECT coalesce(s.auto_restart, false) AND coalesce(dv.auto_remediation_enabled, false) AS remedied
                           FROM agent_devices dv WHERE dv.id = p.device_id) rm ON true
     WHERE p.kind = 'service_down'
     GROUP BY p.id, p.device_id
),
eval AS (
    SELECT rule_id, device_id, business_id, severity, in_maintenance, since, 'metric' AS kind,
           covered AND CASE operator WHEN '>' THEN agg > threshold WHEN '>=' THEN agg >= threshold
                                     WHEN '<' THEN agg < threshold WHEN '<=' THEN agg <= threshold END AS breach,
           covered AND CASE operator WHEN '>' THEN agg <= threshold - hyst WHEN '>=' THEN agg < threshold - hyst
                                     WHEN '<' THEN agg >= threshold + hyst WHEN '<=' THEN agg > threshold + hyst END AS clear,
           agg AS value, threshold, win, NULL::text AS names
      FROM mval
    UNION ALL
    SELECT id, device_id, business_id, severity, in_maintenance, heard_at, 'agent_offline',
           heard_at <= now() - win, heard_at > now() - win,
           round((extract(epoch FROM now() - heard_at) / 60)::numeric, 1)::float8,
           extract(epoch FROM win)::float8 / 60, win, NULL
      FROM pairs WHERE kind = 'agent_offline'
    UNION ALL
    SELECT rule_id, device_id, business_id, severity, in_maintenance, since, 'service_down',
           down_long > 0, down_any = 0, down_long::float8, extract(epoch FROM win)::float8 / 60, win, names
      FROM sagg
),
open_now AS (
    SELECT h.id, h.agent_alert_id, h.agent_device_id
      FROM agent_alert_history h
     WHERE h.status IN ('active', 'acknowledged')
),
manual AS (
    SELECT agent_alert_id, agent_device_id, max(resolved_at) AS resolved_at
      FROM agent_alert_history
     WHERE status = 'resolved' AND resolved_at > now() - interval '2 days'
     GROUP BY agent_alert_id, agent_device_id
),
opened AS (
    INSERT INTO agent_alert_history (agent_alert_id, agent_device_id, business_id, severity, alert_message,
                                     metric_value, threshold_value, condition_since, status, triggered_at)
    SELECT e.rule_id, e.device_id, e.business_id, e.severity,
           CASE e.kind
             WHEN 'metric' THEN format('%%s on %%s: %%s(%%s) = %%s %%s %%s over %%s min', r.alert_name, d.device_name,
                                       r.aggregation, r.metric, round(e.value::numeric, 2), r.operator, e.threshold,
                                       extract(epoch FROM e.win)::int / 60)
             WHEN 'agent_offline' THEN format('%%s: device %%s has not sent a heartbeat for %%s min (last %%s)',
                                       r.alert_name, d.device_name, round(e.value::numeric), to_char(
                                       e.since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
             ELSE format('%%s on %%s: service(s) %%s not running for over %%s min', r.alert_name, d.device_name,
                         e.names, extract(epoch FROM e.win)::int / 60)
           END,
           -- a value of a real column is kept as the shortest decimal of that float (95.1, not
           -- 95.0999984741211): through real's text form, which is exactly that decimal
           CASE WHEN r.metric IN ('cpu_percent', 'memory_used_gb', 'memory_percent', 'disk_used_gb', 'disk_percent',
                                  'load_average_1m', 'load_average_5m', 'load_average_15m')
                THEN e.value::real::text::float8 ELSE e.value END,
           e.threshold, e.since, 'active', now()
      FROM eval e
      JOIN agent_alerts r ON r.id = e.rule_id
      JOIN agent_devices d ON d.id = e.device_id
      LEFT JOIN manual m ON m.agent_alert_id = e.rule_id AND m.agent_device_id = e.device_id
     WHERE e.breach AND NOT e.in_maintenance
       AND (m.resolved_at IS NULL OR e.since > m.resolved_at)
       AND NOT EXISTS (SELECT 1 FROM open_now o WHERE o.agent_alert_id = e.rule_id AND o.agent_device_id = e.device_id)
     ORDER BY e.rule_id, e.device_id  -- one lock order for every evaluator: no deadlocks between them
    ON CONFLICT (agent_alert_id, agent_device_id) WHERE status IN ('active', 'acknowledged') DO NOTHING
    RETURNING id, agent_alert_id, agent_device_id
),
resolved AS (
    UPDATE agent_alert_history h
       SET status = 'auto_resolved', resolved_at = now(),
           resolution_notes = concat_ws(E'\n', h.resolution_notes, 'auto-resolved: condition cleared')
      FROM eval e
     WHERE h.agent_alert_id = e.rule_id AND h.agent_device_id = e.device_id
       AND h.status IN ('active', 'acknowledged') AND e.clear
    RETURNING h.id, h.agent_alert_id, h.agent_device_id
),
bumped AS (
    UPDATE agent_alerts r
       SET trigger_count = coalesce(r.trigger_count, 0) + c.n, last_triggered = now()
      FROM (SELECT agent_alert_id, count(*) AS n FROM opened GROUP BY agent_alert_id) c
     WHERE r.id = c.agent_alert_id
    RETURNING r.id
),
work AS (
    INSERT INTO alert_outbox (alert_history_id, channel, event)
    SELECT x.id, ch.channel, x.event
      FROM (SELECT id, agent_alert_id, 'opened' AS event FROM opened
            UNION ALL SELECT id, agent_alert_id, 'resolved' FROM resolved) x
      JOIN agent_alerts r ON r.id = x.agent_alert_id
      -- include: rule_followup_channels
    ON CONFLICT DO NOTHING
    RETURNING id
)
SELECT 'opened' AS what, o.id, o.agent_alert_id AS rule_id, o.agent_device_id AS device_id, r.alert_name,
       (SELECT count(*) FROM eval) AS pairs, (SELECT count(*) FROM work) AS work
  FROM opened o JOIN agent_alerts r ON r.id = o.agent_alert_id
UNION ALL
SELECT 'resolved', x.id, x.agent_alert_id, x.agent_device_id, NULL, NULL, NULL FROM resolved x
UNION ALL
SELECT 'stats', NULL, NULL, NULL, NULL, (SELECT count(*) FROM eval), (SELECT count(*) FROM work)
  FROM (SELECT count(*) FROM bumped) b

-- name: run_start
INSERT INTO alert_evaluation_runs (instance, scope) VALUES (%(instance)s, %(scope)s) RETURNING id

-- name: run_finish
UPDATE alert_evaluation_runs
   SET finished_at = clock_timestamp(), pairs = %(pairs)s, opened = %(opened)s, resolved = %(resolved)s,
       duration_ms = %(duration_ms)s, error = %(error)s
 WHERE id = %(id)s

-- name: rule_insert
-- created_by/acknowledged_by/resolved_by: the portal user if it exists here (tokens may name users
-- this database does not hold; the foreign key would otherwise refuse the write).
INSERT INTO agent_alerts (alert_name, alert_type, severity, business_id, agent_device_id, conditions,
                          notification_enabled, notification_channels, notification_recipients, webhook_url,
                          create_ticket, is_active, created_by)
VALUES (%(alert_name)s, %(alert_type)s, %(severity)s, %(business_id)s, %(agent_device_id)s, %(conditions)s,
        %(notification_enabled)s, %(notification_channels)s, %(notification_recipients)s, %(webhook_url)s,
        %(create_ticket)s, %(is_active)s, (SELECT id FROM users WHERE id = %(created_by)s::uuid))
RETURNING id

-- name: rule_select
-- (fragment) A rule as the API shows it, with the API contract's defaults for columns left NULL.
SELECT id, alert_name, alert_type, severity, business_id, agent_device_id, conditions,
       coalesce(notification_enabled, true) AS notification_enabled,
       coalesce(notification_channels, '[]'::jsonb) AS notification_channels,
       coalesce(notification_recipients, '[]'::jsonb) AS notification_recipients,
       webhook_url, create_ticket, coalesce(is_active, true) AS is_active, last_triggered,
       coalesce(trigger_count, 0) AS trigger_count, created_at, updated_at, created_by
  FROM agent_alerts

-- name: rule_get
-- One live rule, only if the caller's scope may see it (another business's rule: no row, a 404).
-- include: rule_select
 WHERE id = %(id)s AND NOT coalesce(soft_delete, false)
   AND (%(scope)s::uuid IS NULL OR business_id = %(scope)s::uuid)

-- name: rule_list
-- include: rule_select
 WHERE NOT coalesce(soft_delete, false)
   AND (%(scope)s::uuid IS NULL OR business_id = %(scope)s::uuid)
   AND (%(business_id)s::uuid IS NULL OR business_id = %(business_id)s::uuid)
   AND (%(agent_id)s::uuid IS NULL OR agent_device_id = %(agent_id)s::uuid
        OR (agent_device_id IS NULL AND business_id = (SELECT business_id FROM agent_devices
                                                        WHERE id = %(agent_id)s::uuid)))
   AND (%(active)s::boolean IS NULL OR is_active = %(active)s::boolean)
 ORDER BY created_at, id

-- name: rule_update
UPDATE agent_alerts
   SET alert_name = %(alert_name)s, alert_type = %(alert_type)s, severity = %(severity)s,
       conditions = %(conditions)s, notification_enabled = %(notification_enabled)s,
       notification_channels = %(notification_channels)s, notification_recipients = %(notification_recipients)s,
       webhook_url = %(webhook_url)s, create_ticket = %(create_ticket)s, is_active = %(is_active)s,
       updated_at = now()
 WHERE id = %(id)s AND NOT coalesce(soft_delete, false)

-- name: rule_soft_delete
UPDATE agent_alerts SET soft_delete = true, is_active = false, updated_at = now()
 WHERE id = %(id)s AND NOT coalesce(soft_delete, false)
   AND (%(scope)s::uuid IS NULL OR business_id = %(scope)s::uuid)
RETURNING id

-- name: close_rule_episodes
-- A rule that is disabled or deleted no longer watches: its open episodes resolve, with a note.
UPDATE agent_alert_history
   SET status = 'auto_resolved', resolved_at = now(),
       resolution_notes = concat_ws(E'\n', resolution_notes, %(note)s::text)
 WHERE agent_alert_id = %(id)s AND status IN ('active', 'acknowledged')
RETURNING id

-- name: location_business
SELECT business_id FROM service_locations
 WHERE id = %(id)s AND (%(scope)s::uuid IS NULL OR business_id = %(scope)s::uuid)

-- name: business_exists
SELECT id FROM businesses WHERE id = %(id)s AND (%(scope)s::uuid IS NULL OR id = %(scope)s::uuid)

-- name: episode_list
-- Episodes with filters; tenancy through the denormalised business_id.
SELECT h.id, h.agent_alert_id, r.alert_name, h.agent_device_id, d.device_name, h.business_id,
       h.triggered_at, h.resolved_at, h.severity, h.status, h.alert_message, h.metric_value,
       h.threshold_value, h.condition_since, coalesce(h.notification_sent, false) AS notification_sent,
       h.notification_sent_at, h.service_request_created, h.acknowledged_by, h.acknowledged_at,
       h.resolved_by, h.resolution_notes, count(*) OVER () AS total
  FROM agent_alert_history h
  JOIN agent_alerts r ON r.id = h.agent_alert_id
  JOIN agent_devices d ON d.id = h.agent_device_id
 WHERE (%(scope)s::uuid IS NULL OR h.business_id = %(scope)s::uuid)
   AND (%(business_id)s::uuid IS NULL OR h.business_id = %(business_id)s::uuid)
   AND (%(agent_id)s::uuid IS NULL OR h.agent_device_id = %(agent_id)s::uuid)
   AND (%(rule_id)s::uuid IS NULL OR h.agent_alert_id = %(rule_id)s::uuid)
   AND (%(statuses)s::text[] IS NULL OR h.status = ANY(%(statuses)s::text[]))
   AND (%(severities)s::text[] IS NULL OR h.severity = ANY(%(severities)s::text[]))
   AND (%(since)s::timestamptz IS NULL OR h.triggered_at >= %(since)s::timestamptz)
   AND (%(until)s::timestamptz IS NULL OR h.triggered_at < %(until)s::timestamptz)
 ORDER BY h.triggered_at DESC, h.id
 LIMIT %(limit)s OFFSET %(offset)s

-- name: episode_get
SELECT h.id, h.agent_alert_id, r.alert_name, h.agent_device_id, d.device_name, h.business_id,
       h.triggered_at, h.resolved_at, h.severity, h.status, h.alert_message, h.metric_value,
       h.threshold_value, h.condition_since, coalesce(h.notification_sent, false) AS notification_sent,
       h.notification_sent_at, h.service_request_created, h.acknowledged_by, h.acknowledged_at,
       h.resolved_by, h.resolution_notes
  FROM agent_alert_history h
  JOIN agent_alerts r ON r.id = h.agent_alert_id
  JOIN agent_devices d ON d.id = h.agent_device_id
 WHERE h.id = %(id)s AND (%(scope)s::uuid IS NULL OR h.business_id = %(scope)s::uuid)

-- name: episode_lock
SELECT id, status FROM agent_alert_history
 WHERE id = %(id)s AND (%(scope)s::uuid IS NULL OR business_id = %(scope)s::uuid)
 FOR UPDATE

-- name: episode_acknowledge
UPDATE agent_alert_history
   SET status = 'acknowledged', acknowledged_by = (SELECT id FROM users WHERE id = %(user_id)s::uuid), acknowledged_at = now(),
       resolution_notes = concat_ws(E'\n', resolution_notes, %(notes)s::text)
 WHERE id = %(id)s AND status = 'active'

-- name: episode_resolve
UPDATE agent_alert_history
   SET status = 'resolved', resolved_at = now(), resolved_by = (SELECT id FROM users WHERE id = %(user_id)s::uuid),
       resolution_notes = concat_ws(E'\n', resolution_notes, %(notes)s::text)
 WHERE id = %(id)s AND status IN ('active', 'acknowledged')

-- name: enqueue_resolved
-- The same follow-up work an automatic resolve gets (ticket note, notifications).
INSERT INTO alert_outbox (alert_history_id, channel, event)
SELECT h.id, ch.channel, 'resolved'
  FROM agent_alert_history h
  JOIN agent_alerts r ON r.id = h.agent_alert_id
  -- include: rule_followup_channels
 WHERE h.id = ANY(%(ids)s::uuid[])
ON CONFLICT DO NOTHING

-- name: deliveries
SELECT l.channel, l.event, l.attempt, l.target, l.ok, l.status_code, l.error, l.duration_ms, l.attempted_at
  FROM alert_notification_log l
 WHERE l.alert_history_id = %(id)s
 ORDER BY l.attempted_at, l.id

-- name: maintenance_insert
INSERT INTO alert_maintenance_windows (business_id, service_location_id, agent_device_id, starts_at, ends_at,
                                       reason, created_by)
VALUES (%(business_id)s, %(service_location_id)s, %(agent_device_id)s, %(starts_at)s, %(ends_at)s,
        %(reason)s, (SELECT id FROM users WHERE id = %(created_by)s::uuid))
RETURNING id

-- name: maintenance_get
SELECT id, business_id, service_location_id, agent_device_id, starts_at, ends_at, reason, created_by, created_at,
       (starts_at <= now() AND ends_at > now()) AS active
  FROM alert_maintenance_windows
 WHERE id = %(id)s AND (%(scope)s::uuid IS NULL OR business_id = %(scope)s::uuid)

-- name: maintenance_list
SELECT id, business_id, service_location_id, agent_device_id, starts_at, ends_at, reason, created_by, created_at,
       (starts_at <= now() AND ends_at > now()) AS active
  FROM alert_maintenance_windows
 WHERE (%(scope)s::uuid IS NULL OR business_id = %(scope)s::uuid)
   AND (%(business_id)s::uuid IS NULL OR business_id = %(business_id)s::uuid)
   AND (%(current)s::boolean IS NOT TRUE OR (starts_at <= now() AND ends_at > now()))
   AND (%(include_past)s::boolean OR ends_at > now())
 ORDER BY starts_at, id

-- name: maintenance_update
UPDATE alert_maintenance_windows SET starts_at = %(starts_at)s, ends_at = %(ends_at)s, reason = %(reason)s
 WHERE id = %(id)s

-- name: maintenance_delete
DELETE FROM alert_maintenance_windows
 WHERE id = %(id)s AND (%(scope)s::uuid IS NULL OR business_id = %(scope)s::uuid)
RETURNING id

-- name: ticket_create
-- The API contract's alert -> service request: business, location, title, description, priority from
-- severity (alert_severity_ticket_map), source 'automated_agent_alert'. Only if the episode has
-- no ticket yet (exactly one per episode).
INSERT INTO service_requests (business_id, service_location_id, title, description, priority_level_id,
                              urgency_level_id, status_id, source)
SELECT h.business_id, d.service_location_id,
       left(format('[%%s] %%s on %%s', upper(h.severity), r.alert_name, d.device_name), 500),
       format(E'%%s\n\nDevice: %%s (%%s)\nSeverity: %%s\nTriggered: %%s\nAlert id: %%s', h.alert_message,
              d.device_name, coalesce(d.hostname, '-'), h.severity,
              to_char(h.triggered_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), h.id),
       m.priority_level_id, m.urgency_level_id, m.status_id, 'automated_agent_alert'
  FROM agent_alert_history h
  JOIN agent_alerts r ON r.id = h.agent_alert_id
  JOIN agent_devices d ON d.id = h.agent_device_id
  LEFT JOIN alert_severity_ticket_map m ON m.severity = h.severity
 WHERE h.id = %(id)s AND h.service_request_created IS NULL
RETURNING id

-- name: ticket_link
UPDATE agent_alert_history SET service_request_created = %(sr)s WHERE id = %(id)s

-- name: ticket_annotate
-- On resolve: append what happened to the ticket (the technician closes it in the portal).
UPDATE service_requests sr
   SET description = concat_ws(E'\n\n', sr.description,
           format('Alert %%s at %%s.%%s', replace(h.status, '_', '-'),
                  to_char(h.resolved_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                  coalesce(' Notes: ' || h.resolution_notes, ''))),
       updated_at = now()
  FROM agent_alert_history h
 WHERE h.id = %(id)s AND sr.id = h.service_request_created

-- name: prune_runs
-- Housekeeping after each cycle: a week of cycle records is plenty to see trends and overlaps.
DELETE FROM alert_evaluation_runs WHERE started_at < now() - interval '7 days'

-- name: metric_rule_scopes
-- Which flushed devices could match a metric rule at all: lets the ingest hook skip its
-- evaluation round trip for fleets (or devices) without metric rules.
SELECT coalesce(bool_or(agent_device_id IS NULL), false) AS business_wide,
       coalesce(array_agg(agent_device_id) FILTER (WHERE agent_device_id IS NOT NULL), '{}') AS devices
  FROM agent_alerts
 WHERE kind = 'metric' AND is_active AND NOT soft_delete

-- name: rule_followup_channels
-- Included where episodes enqueue follow-up work: one row per outbox channel of rule ``r``
-- (a ticket if the rule, or else its business's ticket policy, says so, plus its enabled
-- webhook/email/sms channels).
CROSS JOIN LATERAL (
    -- the rule's own choice, else its business's policy (no policy row: every severity)
    SELECT 'ticket' WHERE coalesce(r.create_ticket, r.severity = ANY(coalesce(
        (SELECT tp.ticket_severities FROM business_ticket_policy tp WHERE tp.business_id = r.business_id),
        ARRAY['info', 'warning', 'critical']::varchar[])))
    UNION ALL
    SELECT c FROM jsonb_array_elements_text(
           CASE WHEN r.notification_enabled AND jsonb_typeof(r.notification_channels) = 'array'
                THEN r.notification_channels ELSE '[]'::jsonb END) c
     WHERE c IN ('webhook', 'email', 'sms')
) ch(channel)

-- name: usable_recipients
-- Which of the given user ids may receive a rule's notifications: active, not deleted, and of the
-- rule's business or MSP staff (the same test the delivery applies, notifications/queries.sql).
SELECT id FROM users
 WHERE id = ANY(%(ids)s::uuid[]) AND coalesce(is_active, true) AND NOT coalesce(soft_delete, false)
   AND (business_id = %(business_id)s OR role IN ('admin', 'technician'))

-- name: ticket_policy
SELECT b.id AS business_id,
       coalesce(tp.ticket_severities, ARRAY['info', 'warning', 'critical']::varchar[]) AS ticket_severities,
       tp.updated_at
  FROM businesses b LEFT JOIN business_ticket_policy tp ON tp.business_id = b.id
 WHERE b.id = %(business_id)s AND b.soft_delete IS NOT TRUE
   AND (%(scope)s::uuid IS NULL OR b.id = %(scope)s::uuid)

-- name: set_ticket_policy
INSERT INTO business_ticket_policy (business_id, ticket_severities)
VALUES (%(business_id)s, %(ticket_severities)s::varchar[])
ON CONFLICT (business_id) DO UPDATE SET ticket_severities = EXCLUDED.ticket_severities, updated_at = now()
