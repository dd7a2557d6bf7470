-- name: insert_event
-- ON CONFLICT: an event re-sent with the same event_id is stored once (the first wins).
INSERT INTO agent_events (agent_device_id, event_type, occurred_at, data, event_id, via)
VALUES (%(agent_id)s, %(event_type)s, COALESCE(%(occurred_at)s, now()), %(data)s, %(event_id)s, %(via)s)
ON CONFLICT (agent_device_id, event_id) WHERE event_id IS NOT NULL DO NOTHING
RETURNING id

-- name: event_by_event_id
SELECT id FROM agent_events WHERE agent_device_id = %(agent_id)s AND event_id = %(event_id)s

-- name: set_service_status
-- What the service_down alert rule reads: status and when it changed (only on a real change; an
-- agent clock ahead of ours must not postpone the alert, hence LEAST).
INSERT INTO agent_monitored_services AS s (agent_device_id, service_name, status, pid, last_checked,
                                           last_state_change)
VALUES (%(agent_id)s, %(service_name)s, %(status)s, %(pid)s, now(), LEAST(%(at)s::timestamptz, now()))
ON CONFLICT (agent_device_id, service_name) DO UPDATE
   SET status = EXCLUDED.status,
       pid = EXCLUDED.pid,
       last_checked = now(),
       last_state_change = CASE WHEN s.status IS DISTINCT FROM EXCLUDED.status
                                THEN EXCLUDED.last_state_change ELSE s.last_state_change END,
       restart_count = s.restart_count
           + CASE WHEN EXCLUDED.status = 'running' AND s.status IS DISTINCT FROM 'running' THEN 1 ELSE 0 END

-- name: list_events
SELECT e.id, e.agent_device_id AS agent_id, e.event_type, e.occurred_at, e.received_at, e.data, e.event_id, e.via
  FROM agent_events e
  JOIN agent_devices d ON d.id = e.agent_device_id
 WHERE e.agent_device_id = %(agent_id)s
   AND d.soft_delete = false
   AND (%(scope)s::uuid IS NULL OR d.business_id = %(scope)s)
   AND (%(event_type)s::text IS NULL OR e.event_type = %(event_type)s)
   AND (%(before)s::timestamptz IS NULL OR e.occurred_at < %(before)s)
 ORDER BY e.occurred_at DESC, e.id DESC
 LIMIT %(limit)s
