-- name: device_entries
SELECT service_name, should_be_running, auto_restart
  FROM device_monitored_services WHERE agent_device_id = %(agent_id)s ORDER BY service_name

-- name: delete_device_entries
DELETE FROM device_monitored_services WHERE agent_device_id = %(agent_id)s

-- name: insert_device_entries
INSERT INTO device_monitored_services (agent_device_id, service_name, should_be_running, auto_restart)
SELECT %(agent_id)s, n, r, a
  FROM unnest(%(names)s::text[], %(running)s::bool[], %(restart)s::bool[]) AS x(n, r, a)

-- name: business_entries
SELECT service_name, nullif(os_type, '') AS os_type, should_be_running, auto_restart
  FROM business_monitored_services WHERE business_id = %(business_id)s ORDER BY os_type, service_name

-- name: delete_business_entries
DELETE FROM business_monitored_services WHERE business_id = %(business_id)s

-- name: insert_business_entries
INSERT INTO business_monitored_services (business_id, os_type, service_name, should_be_running, auto_restart)
SELECT %(business_id)s, lower(o), n, r, a
  FROM unnest(%(os_types)s::text[], %(names)s::text[], %(running)s::bool[], %(restart)s::bool[]) AS x(o, n, r, a)

-- name: business_devices
SELECT id FROM agent_devices WHERE business_id = %(business_id)s AND soft_delete = false

-- name: visible_business
SELECT id FROM businesses
 WHERE id = %(business_id)s AND soft_delete IS NOT TRUE
   AND (%(scope)s::uuid IS NULL OR id = %(scope)s)

-- name: sync_devices
-- Materialise each device's effective list (its own entries, else its business's defaults for
-- its OS, else for every OS) into agent_monitored_services; a row that left the list goes back
-- to what an agent-reported service gets (should be running, no auto-restart). Devices whose
-- list changed get a new config_version, so their next heartbeat says config_updated.
WITH eff AS (
    SELECT DISTINCT ON (d.id, x.service_name) d.id AS device_id, x.service_name, x.should_be_running,
           x.auto_restart
      FROM agent_devices d
      CROSS JOIN LATERAL (
            SELECT m.service_name, m.should_be_running, m.auto_restart, 0 AS rank
              FROM device_monitored_services m WHERE m.agent_device_id = d.id
            UNION ALL
            SELECT b.service_name, b.should_be_running, b.auto_restart, CASE WHEN b.os_type = '' THEN 2 ELSE 1 END
              FROM business_monitored_services b
             WHERE b.business_id = d.business_id AND (b.os_type = '' OR b.os_type = lower(d.os_type))
      ) x
     WHERE d.id = ANY(%(ids)s::uuid[])
     ORDER BY d.id, x.service_name, x.rank
), before AS (
    SELECT agent_device_id, service_name, should_be_running, auto_restart
      FROM agent_monitored_services
     WHERE agent_device_id = ANY(%(ids)s::uuid[]) AND configured
), upsert AS (
    INSERT INTO agent_monitored_services AS s (agent_device_id, service_name, should_be_running, auto_restart,
                                               configured)
    SELECT device_id, service_name, should_be_running, auto_restart, true FROM eff
    ON CONFLICT (agent_device_id, service_name) DO UPDATE
       SET should_be_running = EXCLUDED.should_be_running, auto_restart = EXCLUDED.auto_restart, configured = true
), dropped AS (
    UPDATE agent_monitored_services s
       SET configured = false, should_be_running = true, auto_restart = false
      FROM before b
     WHERE s.agent_device_id = b.agent_device_id AND s.service_name = b.service_name
       AND NOT EXISTS (SELECT 1 FROM eff e WHERE e.device_id = b.agent_device_id AND e.service_name = b.service_name)
), changed AS (
    SELECT device_id FROM (
        SELECT device_id, service_name, should_be_running, auto_restart FROM eff
        EXCEPT SELECT agent_device_id, service_name, should_be_running, auto_restart FROM before
    ) a
    UNION
    SELECT agent_device_id FROM (
        SELECT agent_device_id, service_name, should_be_running, auto_restart FROM before
        EXCEPT SELECT device_id, service_name, should_be_running, auto_restart FROM eff
    ) r
)
UPDATE agent_devices d SET config_version = d.config_version + 1, updated_at = now()
  FROM changed c WHERE d.id = c.device_id
RETURNING d.id

-- name: effective_services
-- What the agent watches (its config) and the portal shows, with the last state seen.
SELECT s.service_name, s.should_be_running, s.auto_restart, s.status, s.pid, s.last_state_change,
       s.last_checked, s.restart_count
  FROM agent_monitored_services s
 WHERE s.agent_device_id = %(agent_id)s AND s.configured
 ORDER BY s.service_name

-- name: remediation_due
-- Down services that auto-remediation should restart now: auto_restart on a device with
-- auto_remediation_enabled that is online; no attempt open (pending/sent/executing) nor started
-- in the last %(spacing)s; fewer than %(max_per_hour)s attempts in the last hour. A service a
-- concurrent transaction holds (a crash event being recorded) is skipped, not waited for.
SELECT s.agent_device_id, s.service_name, d.business_id, s.status,
       (SELECT count(*) FROM service_remediations r
         WHERE r.agent_device_id = s.agent_device_id AND r.service_name = s.service_name
           AND r.requested_at > now() - interval '1 hour') AS attempts_last_hour
  FROM agent_monitored_services s
  JOIN agent_devices d ON d.id = s.agent_device_id
 WHERE s.auto_restart AND coalesce(s.should_be_running, true) AND d.auto_remediation_enabled
   AND d.soft_delete = false AND d.status = 'online'
   -- not_found: there is nothing to restart; starting: it is on its way back
   AND s.status IS NOT NULL AND s.status NOT IN ('running', 'starting', 'not_found')
   AND (%(agent_id)s::uuid IS NULL OR s.agent_device_id = %(agent_id)s::uuid)
   AND (%(service_name)s::text IS NULL OR s.service_name = %(service_name)s::text)
   AND NOT EXISTS (
        SELECT 1 FROM service_remediations r JOIN agent_commands c ON c.id = r.command_id
         WHERE r.agent_device_id = s.agent_device_id AND r.service_name = s.service_name
           AND (c.status IN ('pending', 'sent', 'executing') OR r.requested_at > now() - %(spacing)s::interval))
   AND (SELECT count(*) FROM service_remediations r
         WHERE r.agent_device_id = s.agent_device_id AND r.service_name = s.service_name
           AND r.requested_at > now() - interval '1 hour') < %(max_per_hour)s
 ORDER BY s.agent_device_id, s.service_name
   FOR UPDATE OF s SKIP LOCKED

-- name: insert_remediation
INSERT INTO service_remediations (agent_device_id, service_name, command_id, trigger)
VALUES (%(agent_id)s, %(service_name)s, %(command_id)s, %(trigger)s)

-- name: link_remediations
-- Attempts join the open service_down episode of their service (the episode shows them,
-- docs/services.md): those made since the service went down (the episode's condition_since),
-- before the episode opened or while it is open; an earlier outage's attempts stay out.
UPDATE service_remediations r
   SET alert_history_id = h.id
  FROM agent_alert_history h
  JOIN agent_alerts a ON a.id = h.agent_alert_id
 WHERE r.alert_history_id IS NULL
   AND r.requested_at > now() - interval '1 hour'
   AND h.agent_device_id = r.agent_device_id AND h.resolved_at IS NULL
   AND r.requested_at >= coalesce(h.condition_since, h.triggered_at - interval '1 hour')
   AND a.conditions->>'kind' = 'service_down'
   AND (a.conditions->>'service_name' IS NULL OR a.conditions->>'service_name' = r.service_name)
   AND (%(agent_id)s::uuid IS NULL OR r.agent_device_id = %(agent_id)s::uuid)

-- name: episode_remediations
SELECT r.service_name, r.command_id, r.trigger, r.requested_at, c.status, c.exit_code, c.completed_at,
       c.error_message
  FROM service_remediations r JOIN agent_commands c ON c.id = r.command_id
 WHERE r.alert_history_id = %(alert_id)s
 ORDER BY r.requested_at
