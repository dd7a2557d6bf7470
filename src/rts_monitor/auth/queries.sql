-- name: agents_by_token_hashes
-- The agents these tokens belong to (one statement for every lookup waiting at that moment:
-- agents.py), only while that token is live and the device not deleted: the current token, or
-- the one it replaced until its grace period ends (``seconds_left`` then bounds how long the
-- answer may be cached). Two probes of unique indexes per hash, no OR across columns.
SELECT h.token_hash, d.id, d.business_id, d.service_location_id,
       false AS previous_token, NULL::float8 AS seconds_left
  FROM unnest(%(token_hashes)s::text[]) AS h(token_hash)
  JOIN agent_devices d ON d.agent_token_hash = h.token_hash
 WHERE d.agent_token_revoked_at IS NULL
   AND d.soft_delete = false
UNION ALL
SELECT h.token_hash, d.id, d.business_id, d.service_location_id,
       true AS previous_token, extract(epoch FROM d.agent_token_previous_expires_at - now())::float8
  FROM unnest(%(token_hashes)s::text[]) AS h(token_hash)
  JOIN agent_devices d ON d.agent_token_previous_hash = h.token_hash
 WHERE d.agent_token_previous_expires_at > now()
   AND d.agent_token_hash IS DISTINCT FROM h.token_hash
   AND d.agent_token_revoked_at IS NULL
   AND d.soft_delete = false

-- name: record_failures
-- One failure per key now; each key's failures within the window, and when the oldest of them
-- leaves it (the earliest moment the key is under its limit again).
WITH ins AS (
    INSERT INTO auth_failures (key) SELECT unnest(%(keys)s::text[]) RETURNING key, at
)
SELECT k.key, count(f.at) + 1 AS failures,
       extract(epoch FROM coalesce(min(f.at), now()) + make_interval(secs => %(window)s) - now())::float8
           AS retry_after
  FROM unnest(%(keys)s::text[]) AS k(key)
  LEFT JOIN auth_failures f ON f.key = k.key AND f.at > now() - make_interval(secs => %(window)s)
 GROUP BY k.key

-- name: prune_failures
DELETE FROM auth_failures WHERE at < now() - make_interval(secs => %(window)s)

-- name: token_state
-- Where the agent's rotation stands, read under the heartbeat's row lock.
SELECT business_id, agent_token_issued_at AS issued_at,
       agent_token_rotate_requested_at IS NOT NULL AS requested,
       agent_token_acked_at IS NOT NULL AS acked,
       agent_token_issued_at < now() - make_interval(secs => %(redeliver_after)s) AS redeliverable,
       agent_token_previous_hash IS NOT NULL AND agent_token_previous_expires_at > now() AS in_grace
  FROM agent_devices
 WHERE id = %(agent_id)s AND agent_token_revoked_at IS NULL AND soft_delete = false

-- name: issue_token
-- The new token becomes current; the one the agent used until now works until the grace ends.
-- ``keep_previous``: the agent still used the token before the last (undelivered) new one, which
-- nobody holds: that one is replaced and the agent's token stays the previous one.
UPDATE agent_devices
   SET agent_token_previous_hash = CASE WHEN %(keep_previous)s THEN agent_token_previous_hash
                                        ELSE agent_token_hash END,
       agent_token_previous_expires_at = now() + make_interval(secs => %(grace)s),
       agent_token_hash = %(token_hash)s,
       agent_token_issued_at = now(),
       agent_token_rotate_requested_at = NULL,
       agent_token_acked_at = NULL,
       updated_at = now()
 WHERE id = %(agent_id)s
RETURNING agent_token_issued_at AS issued_at, agent_token_previous_expires_at AS previous_valid_until

-- name: ack_token
UPDATE agent_devices SET agent_token_acked_at = now() WHERE id = %(agent_id)s

-- name: request_rotation
UPDATE agent_devices
   SET agent_token_rotate_requested_at = coalesce(agent_token_rotate_requested_at, now()), updated_at = now()
 WHERE id = %(agent_id)s
RETURNING id AS agent_id, agent_token_issued_at AS token_issued_at,
          agent_token_rotate_requested_at AS rotation_requested_at

-- name: mark_tokens_due
-- Tokens past their rotation age (the job passes nine tenths of RTS_AGENT_TOKEN_MAX_AGE_DAYS).
UPDATE agent_devices
   SET agent_token_rotate_requested_at = now()
 WHERE agent_token_hash IS NOT NULL AND agent_token_revoked_at IS NULL AND soft_delete = false
   AND agent_token_rotate_requested_at IS NULL
   AND agent_token_issued_at < now() - make_interval(secs => %(age_seconds)s)
RETURNING id, business_id, agent_token_issued_at AS issued_at, agent_token_rotate_requested_at AS requested_at
