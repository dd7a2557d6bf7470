-- name: lock_visible
-- The agents of a bulk request the caller may act on, locked in id order (two bulk requests
-- over overlapping sets cannot deadlock). Others are reported "not found" per device.
SELECT id, business_id, agent_token_hash, monitoring_enabled, metrics_interval_seconds, heartbeat_interval_seconds
  FROM agent_devices
 WHERE id = ANY(%(ids)s::uuid[]) AND soft_delete = false
   AND (%(scope)s::uuid IS NULL OR business_id = %(scope)s::uuid)
 ORDER BY id
   FOR UPDATE

-- name: set_monitoring
-- Pause or resume: monitoring_enabled is part of the agent's config, so a change bumps
-- config_version (the next heartbeat answers config_updated), as PATCH does (queries.sql).
UPDATE agent_devices
   SET monitoring_enabled = %(enabled)s, config_version = config_version + 1, updated_at = now()
 WHERE id = ANY(%(ids)s::uuid[]) AND monitoring_enabled <> %(enabled)s
RETURNING id

-- name: set_intervals
-- NULL is the server default. Only rows whose intervals change get a new config version.
UPDATE agent_devices
   SET metrics_interval_seconds = %(metrics)s::int, heartbeat_interval_seconds = %(heartbeat)s::int,
       config_version = config_version + 1, updated_at = now()
 WHERE id = ANY(%(ids)s::uuid[])
   AND (metrics_interval_seconds IS DISTINCT FROM %(metrics)s::int
        OR heartbeat_interval_seconds IS DISTINCT FROM %(heartbeat)s::int)
RETURNING id

-- name: soft_delete
-- The bulk form of queries.sql soft_delete_agent: the token dies in the same statement.
UPDATE agent_devices
   SET soft_delete = true, is_active = false, agent_token_hash = NULL,
       agent_token_revoked_at = coalesce(agent_token_revoked_at, now()), updated_at = now()
 WHERE id = ANY(%(ids)s::uuid[])
RETURNING id
