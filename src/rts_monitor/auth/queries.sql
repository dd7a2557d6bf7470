-- name: agent_by_token_hash
-- The agent a token belongs to, only while that token is live and the device not deleted.
SELECT id, business_id, service_location_id
  FROM agent_devices
 WHERE agent_token_hash = %(token_hash)s
   AND agent_token_revoked_at IS NULL
   AND soft_delete = false
