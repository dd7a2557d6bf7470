-- name: heartbeat
-- One statement: lock the device row, apply the heartbeat, record a status change if any, and
-- count deliverable pending commands. A disabled agent stays disabled (it still heartbeats).
WITH cur AS (
    SELECT id, status FROM agent_devices
     WHERE id = %(agent_id)s AND soft_delete = false AND agent_token_revoked_at IS NULL
       FOR UPDATE
), upd AS (
    UPDATE agent_devices d
       SET last_heartbeat = now(),
           agent_last_updated = CASE WHEN %(agent_version)s::text IS NOT NULL
                                      AND %(agent_version)s::text <> d.agent_version
                                     THEN now() ELSE d.agent_last_updated END,
           agent_version = coalesce(%(agent_version)s::text, d.agent_version),
           status = CASE WHEN cur.status = 'disabled' THEN 'disabled' ELSE %(status)s::text END,
           status_changed_at = CASE WHEN cur.status <> 'disabled' AND cur.status <> %(status)s::text
                                    THEN now() ELSE d.status_changed_at END,
           config_version_delivered = coalesce(%(config_version)s::int, d.config_version_delivered),
           updated_at = now()
      FROM cur
     WHERE d.id = cur.id
 RETURNING d.id, cur.status AS old_status, d.status AS new_status, d.config_version,
           d.config_version_delivered
), transition AS (
    INSERT INTO agent_status_transitions (agent_device_id, from_status, to_status, reason)
    SELECT id, old_status, new_status, 'heartbeat' FROM upd WHERE old_status <> new_status
)
SELECT upd.new_status AS status, upd.config_version, upd.config_version <> upd.config_version_delivered
       AS config_updated, now() AS server_time,
       (SELECT count(*) FROM agent_commands c
         WHERE c.agent_device_id = upd.id AND c.status = 'pending'
           AND (c.approval_required IS NOT TRUE OR c.approved_at IS NOT NULL)) AS pending_commands,
       -- Cancelled after delivery and not yet answered: the agent must stop them (the socket push
       -- is the fast path; this reaches agents that poll, and any push that was lost).
       (SELECT coalesce(array_agg(c.id ORDER BY c.cancelled_at), '{}') FROM agent_commands c
         WHERE c.agent_device_id = upd.id AND c.status = 'cancelled' AND c.sent_at IS NOT NULL
           AND c.late_result_at IS NULL AND c.cancelled_at > now() - interval '1 day') AS cancel_commands
  FROM upd

-- name: agent_config_row
SELECT config_version, monitoring_enabled, alerts_enabled, auto_remediation_enabled, metrics_interval_seconds,
       heartbeat_interval_seconds
  FROM agent_devices WHERE id = %(agent_id)s AND soft_delete = false

-- name: mark_config_delivered
UPDATE agent_devices SET config_version_delivered = %(config_version)s WHERE id = %(agent_id)s

-- name: mark_offline
-- The presence sweep. Last sign of life = the newest of heartbeat, metrics and the last status
-- change (a just-enabled agent gets a full grace period). Disabled agents are never touched;
-- rows a heartbeat holds right now are skipped (that heartbeat is proof of life anyway).
WITH stale AS (
    SELECT id, status FROM agent_devices
     WHERE soft_delete = false AND status IN ('online', 'error')
       AND coalesce(greatest(last_heartbeat, last_metrics_received, status_changed_at), created_at)
           < now() - make_interval(secs => %(threshold_seconds)s)
       FOR UPDATE SKIP LOCKED
), upd AS (
    UPDATE agent_devices d
       SET status = 'offline', status_changed_at = now(), updated_at = now()
      FROM stale WHERE d.id = stale.id
 RETURNING d.id, stale.status AS old_status
)
INSERT INTO agent_status_transitions (agent_device_id, from_status, to_status, reason)
SELECT id, old_status, 'offline', %(reason)s FROM upd
RETURNING agent_device_id

-- name: fleet_page
-- A page of the fleet, then the newest metric row of just those agents. The LATERAL probe is an
-- ordered backward scan of the (agent_device_id, collected_at) key that stops at the first row,
-- and the lookback bound prunes older chunks at executor start-up: history is never scanned.
-- {sort}/{cmp}/{dir}/{sort_type} come from a fixed whitelist in service.py, never from input;
-- {sort} is an expression over alias d, valid both on agent_devices and on the page.
WITH page AS (
    SELECT d.id, d.device_name, d.hostname, d.business_id, d.service_location_id, d.status,
           d.last_heartbeat, d.os_type, d.os_version, d.agent_version, d.created_at,
           ({sort})::text AS sort_key
      FROM agent_devices d
     WHERE d.soft_delete = false
       AND (%(scope)s::uuid IS NULL OR d.business_id = %(scope)s::uuid)
       AND (%(business_id)s::uuid IS NULL OR d.business_id = %(business_id)s::uuid)
       AND (%(location_id)s::uuid IS NULL OR d.service_location_id = %(location_id)s::uuid)
       AND (%(statuses)s::text[] IS NULL OR d.status = ANY(%(statuses)s::text[]))
       AND (%(q)s::text IS NULL OR d.device_name ILIKE %(q)s::text OR d.hostname ILIKE %(q)s::text)
       AND (%(after_id)s::uuid IS NULL
            OR ({sort}, d.id) {cmp} (%(after_key)s::{sort_type}, %(after_id)s::uuid))
     ORDER BY {sort} {dir}, d.id {dir}
     LIMIT %(limit)s
)
SELECT d.*, m.collected_at AS metrics_collected_at, m.cpu_percent, m.memory_percent, m.disk_percent,
       -- include: business_and_location
  FROM page d
  JOIN businesses b ON b.id = d.business_id
  LEFT JOIN service_locations l ON l.id = d.service_location_id
  LEFT JOIN LATERAL (
        SELECT am.collected_at, am.cpu_percent, am.memory_percent, am.disk_percent
          FROM agent_metric_values am
         WHERE am.agent_device_id = d.id
           AND am.collected_at > now() - make_interval(hours => %(lookback_hours)s)
         ORDER BY am.collected_at DESC
         LIMIT 1
       ) m ON true
 ORDER BY {sort} {dir}, d.id {dir}

-- name: agent_detail
-- The columns of devices/structs.AgentDetail (rows become the struct with msgspec.convert).
SELECT d.id, d.business_id, d.service_location_id, d.device_name, d.os_type, d.os_version, d.agent_version,
       d.status, d.last_heartbeat, d.hostname, d.device_type, d.os_architecture, d.cpu_model,
       d.total_memory_gb::float8 AS total_memory_gb, d.total_disk_gb::float8 AS total_disk_gb,
       host(d.ip_address) AS ip_address, d.mac_address, d.status_changed_at, d.last_metrics_received,
       d.monitoring_enabled, d.alerts_enabled, d.auto_remediation_enabled, d.config_version, d.created_at,
       (SELECT count(*) FROM agent_alert_history h
         WHERE h.agent_device_id = d.id AND h.status IN ('active', 'acknowledged')) AS active_alerts,
       -- include: business_and_location
  FROM agent_devices d
  JOIN businesses b ON b.id = d.business_id
  LEFT JOIN service_locations l ON l.id = d.service_location_id
 WHERE d.id = %(agent_id)s AND d.soft_delete = false
   AND (%(scope)s::uuid IS NULL OR d.business_id = %(scope)s::uuid)

-- name: latest_metrics
-- Newest row of one agent: ordered ChunkAppend, stops at the first chunk that has one.
SELECT collected_at, cpu_percent, memory_used_gb, memory_percent, disk_used_gb, disk_percent,
       ARRAY[load_average_1m, load_average_5m, load_average_15m] AS load_average, uptime_seconds,
       network_rx_bytes, network_tx_bytes
  FROM agent_metric_values
 WHERE agent_device_id = %(agent_id)s
 ORDER BY collected_at DESC
 LIMIT 1

-- name: monitored_services
SELECT service_name AS name, status, service_display_name AS display_name, pid, last_checked
  FROM agent_monitored_services
 WHERE agent_device_id = %(agent_id)s
 ORDER BY service_name

-- name: lock_visible_agent
SELECT id, business_id, status, agent_token_hash, agent_token_previous_hash
  FROM agent_devices
 WHERE id = %(agent_id)s AND soft_delete = false
   AND (%(scope)s::uuid IS NULL OR business_id = %(scope)s::uuid)
   FOR UPDATE

-- name: patch_agent
-- Config-relevant flags bump config_version so the agent's next heartbeat says config_updated.
UPDATE agent_devices d
   SET device_name = coalesce(%(device_name)s::text, d.device_name),
       service_location_id = CASE WHEN %(set_location)s THEN %(location_id)s::uuid
                                  ELSE d.service_location_id END,
       monitoring_enabled = coalesce(%(monitoring_enabled)s::bool, d.monitoring_enabled),
       alerts_enabled = coalesce(%(alerts_enabled)s::bool, d.alerts_enabled),
       auto_remediation_enabled = coalesce(%(auto_remediation_enabled)s::bool, d.auto_remediation_enabled),
       config_version = d.config_version + CASE
           WHEN coalesce(%(monitoring_enabled)s::bool, d.monitoring_enabled) <> d.monitoring_enabled
             OR coalesce(%(alerts_enabled)s::bool, d.alerts_enabled) <> d.alerts_enabled
             OR coalesce(%(auto_remediation_enabled)s::bool, d.auto_remediation_enabled)
                <> d.auto_remediation_enabled
           THEN 1 ELSE 0 END,
       status = coalesce(%(new_status)s::text, d.status),
       status_changed_at = CASE WHEN %(new_status)s::text IS NOT NULL AND %(new_status)s::text <> d.status
                                THEN now() ELSE d.status_changed_at END,
       updated_at = now()
 WHERE d.id = %(agent_id)s

-- name: insert_transition
INSERT INTO agent_status_transitions (agent_device_id, from_status, to_status, reason)
VALUES (%(agent_id)s, %(from_status)s, %(to_status)s, %(reason)s)

-- name: soft_delete_agent
-- Deleting revokes the credential in the same statement: no window where a deleted agent's
-- token still works (beyond the per-process auth cache, evicted by the caller).
UPDATE agent_devices
   SET soft_delete = true, is_active = false, agent_token_hash = NULL,
       agent_token_previous_hash = NULL, agent_token_previous_expires_at = NULL,
       agent_token_revoked_at = coalesce(agent_token_revoked_at, now()), updated_at = now()
 WHERE id = %(agent_id)s

-- name: revoke_agent_token
UPDATE agent_devices
   SET agent_token_hash = NULL, agent_token_previous_hash = NULL, agent_token_previous_expires_at = NULL,
       agent_token_revoked_at = now(), updated_at = now()
 WHERE id = %(agent_id)s

-- name: location_of_business
SELECT 1 AS ok FROM service_locations
 WHERE id = %(location_id)s AND business_id = %(business_id)s AND soft_delete IS NOT TRUE

-- name: business_visible
SELECT 1 AS ok FROM businesses
 WHERE id = %(business_id)s AND (%(scope)s::uuid IS NULL OR id = %(scope)s::uuid)

-- name: admin_fleet
-- Every live agent with its business and location, in display order; grouped in Python.
SELECT d.id, d.device_name, d.hostname, d.status, d.last_heartbeat, d.os_type, d.agent_version,
       d.business_id, b.business_name, d.service_location_id, l.location_name
  FROM agent_devices d
  JOIN businesses b ON b.id = d.business_id
  LEFT JOIN service_locations l ON l.id = d.service_location_id
 WHERE d.soft_delete = false
   AND (%(business_id)s::uuid IS NULL OR d.business_id = %(business_id)s::uuid)
   AND (%(location_id)s::uuid IS NULL OR d.service_location_id = %(location_id)s::uuid)
   AND (%(statuses)s::text[] IS NULL OR d.status = ANY(%(statuses)s::text[]))
 ORDER BY b.business_name, b.id, l.location_name NULLS LAST, l.id, d.device_name, d.id
 LIMIT %(limit)s

-- name: visible_agent
-- Tenancy (devices/scope.py): the agent a caller may see; another business's device is "not found".
SELECT id, business_id, service_location_id
  FROM agent_devices
 WHERE id = %(agent_id)s
   AND soft_delete = false
   AND (%(scope)s::uuid IS NULL OR business_id = %(scope)s::uuid)

-- name: business_and_location
-- The business and location of a device row ``d`` joined with ``b`` and ``l``, as the nested
-- ``business`` and ``service_location`` objects of the wire structs (devices/structs.py).
       json_build_object('id', b.id, 'business_name', b.business_name) AS business,
       CASE WHEN l.id IS NOT NULL THEN json_build_object('id', l.id, 'location_name', l.location_name) END
           AS service_location
