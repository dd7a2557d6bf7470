-- ---------------------------------------------------------------- alert_outbox (outbox.py)

-- name: claim
-- Due rows of some channels, oldest first, locked so concurrent workers skip them, counted as an
-- attempt and (with a lease) not due again before the lease ends.
UPDATE alert_outbox o
   SET attempts = o.attempts + 1, next_attempt_at = now() + %(lease)s::interval
 WHERE o.id IN (SELECT id FROM alert_outbox
                 WHERE status = 'pending' AND channel = ANY(%(channels)s::text[]) AND next_attempt_at <= now()
                 ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
RETURNING o.id, o.alert_history_id, o.channel, o.event, o.attempts

-- name: done
UPDATE alert_outbox SET status = 'done', done_at = now(), last_error = NULL WHERE id = %(id)s

-- name: retry
-- The attempt claimed as number %(attempts)s failed (its claim may have been rolled back with the
-- work: the count is set, not incremented).
UPDATE alert_outbox
   SET attempts = %(attempts)s,
       status = CASE WHEN %(attempts)s >= %(max_attempts)s THEN 'failed' ELSE 'pending' END,
       next_attempt_at = now() + %(backoff)s::interval, last_error = %(error)s
 WHERE id = %(id)s

-- name: prune
DELETE FROM alert_outbox WHERE status IN ('done', 'failed') AND created_at < now() - interval '30 days'

-- ---------------------------------------------------------------- delivery (delivery.py)

-- name: episode_payload
SELECT h.id, h.agent_alert_id, r.alert_name, r.alert_type, h.severity, h.status, h.alert_message, h.metric_value,
       h.threshold_value, h.triggered_at, h.resolved_at, h.condition_since, h.agent_device_id, d.device_name,
       d.hostname, h.business_id, d.service_location_id, h.service_request_created, h.resolution_notes,
       r.webhook_url,
       (SELECT coalesce(array_agg(DISTINCT coalesce(u.email, x.v)), '{}')
          FROM jsonb_array_elements_text(CASE WHEN jsonb_typeof(r.notification_recipients) = 'array'
                                              THEN r.notification_recipients ELSE '[]'::jsonb END) x(v)
          -- a user id reaches only an active user of the episode's business or MSP staff, as
          -- when the rule was saved (alerts/queries.sql: usable_recipients): users change later
          LEFT JOIN users u ON u.id::text = lower(x.v) AND coalesce(u.is_active, true)
                           AND NOT coalesce(u.soft_delete, false)
                           AND (u.business_id = h.business_id OR u.role IN ('admin', 'technician'))
         WHERE u.email IS NOT NULL OR x.v LIKE '%%@%%') AS emails,
       -- E.164 numbers as given, and user ids resolved to the portal user's phone when the portal's
       -- users table has one (read through to_jsonb: the column is the portal's, not ours)
       (SELECT coalesce(array_agg(DISTINCT p ORDER BY p), '{}')
          FROM (SELECT CASE WHEN x.v ~ '^\+[1-9][0-9]{7,14}$' THEN x.v
                            ELSE regexp_replace(coalesce(to_jsonb(u)->>'phone', to_jsonb(u)->>'phone_number',
                                                         to_jsonb(u)->>'mobile_phone', ''), '[^0-9+]', '', 'g')
                       END AS p
                  FROM jsonb_array_elements_text(CASE WHEN jsonb_typeof(r.notification_recipients) = 'array'
                                                      THEN r.notification_recipients ELSE '[]'::jsonb END) x(v)
                  LEFT JOIN users u ON u.id::text = lower(x.v) AND coalesce(u.is_active, true)
                                   AND NOT coalesce(u.soft_delete, false)
                                   AND (u.business_id = h.business_id OR u.role IN ('admin', 'technician'))) q
         WHERE p ~ '^\+[1-9][0-9]{7,14}$') AS phones
  FROM agent_alert_history h
  JOIN agent_alerts r ON r.id = h.agent_alert_id
  JOIN agent_devices d ON d.id = h.agent_device_id
 WHERE h.id = %(id)s

-- name: mark_notified
-- notification_sent is true only once a notification of the opening was actually delivered.
UPDATE agent_alert_history
   SET notification_sent = true, notification_sent_at = coalesce(notification_sent_at, now())
 WHERE id = %(id)s

-- name: log_attempt
INSERT INTO alert_notification_log (outbox_id, alert_history_id, channel, event, attempt, target, ok, status_code,
                                    error, duration_ms)
VALUES (%(outbox_id)s, %(alert_history_id)s, %(channel)s, %(event)s, %(attempt)s, %(target)s, %(ok)s,
        %(status_code)s, %(error)s, %(duration_ms)s)

-- ---------------------------------------------------------------- SMS (delivery.py, sms.py)

-- name: sms_reached
SELECT recipient FROM sms_deliveries WHERE alert_history_id = %(id)s

-- name: sms_recent
-- Texts (own or digest) this number got in the last minute: the storm guard's count.
SELECT count(*) AS n FROM sms_deliveries
 WHERE recipient = %(recipient)s AND sent_at > now() - interval '1 minute'

-- name: sms_record
INSERT INTO sms_deliveries (alert_history_id, recipient, digest, provider_id)
VALUES (%(id)s, %(recipient)s, %(digest)s, %(provider_id)s)
ON CONFLICT DO NOTHING
