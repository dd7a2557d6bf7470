-- name: insert
INSERT INTO audit_log (actor_type, actor_user_id, actor_role, action, object_type, object_id, business_id,
                       before, after, detail)
VALUES (%(actor_type)s, %(actor_user_id)s, %(actor_role)s, %(action)s, %(object_type)s, %(object_id)s,
        %(business_id)s, %(before)s, %(after)s, %(detail)s)

-- name: list
-- Newest first, keyset-paged by (at, id); every filter optional. Staff see everything; the API
-- never offers UPDATE or DELETE (and the table refuses them, sql/migrations/0120_audit_log.sql).
SELECT id, at, actor_type, actor_user_id, actor_role, action, object_type, object_id, business_id,
       before, after, detail
  FROM audit_log
 WHERE (%(business_id)s::uuid IS NULL OR business_id = %(business_id)s::uuid)
   AND (%(actor_user_id)s::uuid IS NULL OR actor_user_id = %(actor_user_id)s::uuid)
   AND (%(action)s::text IS NULL OR action = %(action)s::text OR action LIKE %(action)s::text || '.%%')
   AND (%(object_type)s::text IS NULL OR object_type = %(object_type)s::text)
   AND (%(object_id)s::text IS NULL OR object_id = %(object_id)s::text)
   AND (%(since)s::timestamptz IS NULL OR at >= %(since)s::timestamptz)
   AND (%(until)s::timestamptz IS NULL OR at < %(until)s::timestamptz)
   AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s::bigint)
 ORDER BY id DESC
 LIMIT %(limit)s
