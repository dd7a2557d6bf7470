-- name: location_of_business
-- Is this service location one of that business's (and alive)?
SELECT 1 AS ok
  FROM service_locations
 WHERE id = %(location_id)s AND business_id = %(business_id)s AND soft_delete IS NOT TRUE

-- name: business_exists
SELECT 1 AS ok FROM businesses WHERE id = %(business_id)s AND soft_delete IS NOT TRUE

-- name: insert_registration_token
INSERT INTO agent_registration_tokens
       (token_hash, token_hint, business_id, service_location_id, device_name, created_by, expires_at)
VALUES (%(token_hash)s, %(token_hint)s, %(business_id)s, %(location_id)s, %(device_name)s,
        %(created_by)s, now() + make_interval(secs => %(ttl_seconds)s))
RETURNING id, expires_at

-- name: list_registration_tokens
-- Newest first; state is derived, so the filter and the answer never disagree.
SELECT * FROM (
    SELECT t.id, t.token_hint, t.business_id, t.service_location_id, t.device_name, t.created_at,
           t.created_by, t.expires_at, t.used_at, t.used_by_agent_id, t.revoked_at,
           CASE WHEN t.used_at IS NOT NULL THEN 'used'
                WHEN t.revoked_at IS NOT NULL THEN 'revoked'
                WHEN t.expires_at <= now() THEN 'expired'
                ELSE 'active' END AS state
      FROM agent_registration_tokens t
     WHERE (%(business_id)s::uuid IS NULL OR t.business_id = %(business_id)s::uuid)
) s
 WHERE (%(state)s::text IS NULL OR s.state = %(state)s::text)
 ORDER BY s.created_at DESC, s.id DESC
 LIMIT %(limit)s

-- name: revoke_registration_token
-- Revoking twice is a no-op; a used token cannot be revoked (it is spent already).
UPDATE agent_registration_tokens
   SET revoked_at = coalesce(revoked_at, now()), revoked_by = coalesce(revoked_by, %(user_id)s)
 WHERE id = %(token_id)s AND used_at IS NULL
RETURNING id, business_id, token_hint

-- name: registration_token_state
-- Why a token could not be claimed: the message names the reason.
SELECT used_at, revoked_at, expires_at, expires_at <= now() AS expired
  FROM agent_registration_tokens
 WHERE token_hash = %(token_hash)s

-- name: claim_registration_token
-- The single-use gate: one conditional UPDATE. A concurrent claimer blocks on the row lock,
-- then re-checks `used_at IS NULL` against the committed row and gets nothing.
UPDATE agent_registration_tokens
   SET used_at = now()
 WHERE token_hash = %(token_hash)s
   AND used_at IS NULL AND revoked_at IS NULL AND expires_at > now()
RETURNING id, business_id, service_location_id, device_name, created_by

-- name: insert_agent_device
INSERT INTO agent_devices
       (business_id, service_location_id, agent_token_hash, device_name, device_type, os_type,
        os_version, os_architecture, hostname, agent_version, agent_last_updated, status,
        status_changed_at, last_heartbeat, cpu_model, total_memory_gb, total_disk_gb, ip_address,
        mac_address, created_by)
VALUES (%(business_id)s, %(location_id)s, %(token_hash)s, %(device_name)s, %(device_type)s,
        %(os_type)s, %(os_version)s, %(os_architecture)s, %(hostname)s, %(agent_version)s, now(),
        'online', now(), now(), %(cpu_model)s, %(total_memory_gb)s, %(total_disk_gb)s,
        %(ip_address)s::inet, %(mac_address)s, (SELECT id FROM users WHERE id = %(created_by)s))
RETURNING id, config_version, monitoring_enabled, alerts_enabled, auto_remediation_enabled

-- name: record_registration
-- Link the spent token to the agent and write the first status transition.
WITH t AS (
    UPDATE agent_registration_tokens SET used_by_agent_id = %(agent_id)s WHERE id = %(token_id)s
)
INSERT INTO agent_status_transitions (agent_device_id, from_status, to_status, reason)
VALUES (%(agent_id)s, NULL, 'online', 'registered')

-- name: deliver_current_config
UPDATE agent_devices SET config_version_delivered = config_version WHERE id = %(agent_id)s
RETURNING config_version
