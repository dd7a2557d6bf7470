-- name: agent_by_token_hash
-- The agent a token belongs to, only while that token is live and the device not deleted.
SELECT id, business_id, service_location_id
  FROM agent_devices
 WHERE agent_token_hash = %(token_hash)s
   AND agent_token_revoked_at IS NULL
   AND soft_delete = false

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
