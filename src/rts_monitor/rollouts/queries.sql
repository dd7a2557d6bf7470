-- name: eligible_devices
-- Devices a rollout would update: in scope, enrolled, monitored (not disabled), of a business
-- that has not opted out. Versions are compared in Python (service.py: PEP 440, as pip does).
SELECT d.id AS agent_id, d.business_id, d.agent_version
  FROM agent_devices d
 WHERE NOT d.soft_delete AND d.status <> 'disabled'
   AND (%(business_ids)s::uuid[] IS NULL OR d.business_id = ANY(%(business_ids)s::uuid[]))
   AND NOT EXISTS (SELECT 1 FROM agent_rollout_opt_outs o WHERE o.business_id = d.business_id)
 ORDER BY md5(d.id::text)

-- name: insert_rollout
INSERT INTO agent_rollouts (target_version, source, business_ids, canary_percent, wave_percent,
                            max_failure_percent, command_timeout_seconds, status, waves, requested_by)
VALUES (%(target_version)s, %(source)s, %(business_ids)s, %(canary_percent)s, %(wave_percent)s,
        %(max_failure_percent)s, %(command_timeout_seconds)s, %(status)s, %(waves)s, %(requested_by)s)
RETURNING id

-- name: insert_devices
INSERT INTO agent_rollout_devices (rollout_id, agent_device_id, business_id, wave, from_version)
SELECT %(rollout_id)s, d, b, w, v
  FROM unnest(%(devices)s::uuid[], %(businesses)s::uuid[], %(waves)s::int[], %(versions)s::text[]) AS x(d, b, w, v)

-- name: rollout_columns
-- (fragment) a rollout as the API shows it
SELECT r.id, r.target_version, r.source, r.business_ids, r.canary_percent, r.wave_percent, r.max_failure_percent,
       r.command_timeout_seconds, r.status, r.status_reason, r.current_wave, r.waves, r.requested_by,
       r.approved_by, r.approved_at, r.created_at, r.updated_at, r.finished_at,
       (SELECT coalesce(json_agg(json_build_object(
                   'wave', p.wave, 'devices', p.devices, 'planned', p.planned, 'sent', p.sent,
                   'succeeded', p.succeeded, 'failed', p.failed, 'skipped', p.skipped) ORDER BY p.wave), '[]')
          FROM (SELECT wave, count(*) AS devices, count(*) FILTER (WHERE state = 'planned') AS planned,
                       count(*) FILTER (WHERE state = 'sent') AS sent,
                       count(*) FILTER (WHERE state = 'succeeded') AS succeeded,
                       count(*) FILTER (WHERE state = 'failed') AS failed,
                       count(*) FILTER (WHERE state = 'skipped') AS skipped
                  FROM agent_rollout_devices WHERE rollout_id = r.id GROUP BY wave) p) AS progress
  FROM agent_rollouts r

-- name: get_rollout
-- include: rollout_columns
 WHERE r.id = %(id)s

-- name: lock_rollout
SELECT * FROM agent_rollouts WHERE id = %(id)s FOR UPDATE

-- name: list_rollouts
-- include: rollout_columns
 WHERE (%(status)s::text IS NULL OR r.status = %(status)s::text)
 ORDER BY r.created_at DESC
 LIMIT %(limit)s

-- name: rollout_devices
-- command_status: where the device's update is before the advance job takes its outcome (the
-- console shows a command executing or finished at once, the device's state on the next tick).
-- A page of them, in one state or all (``state`` NULL): a rollout may hold a whole fleet, and its
-- page re-reads itself while it runs.
SELECT rd.agent_device_id AS agent_id, d.device_name, rd.business_id, rd.wave, rd.state, rd.from_version,
       rd.command_id, c.status AS command_status, rd.error, rd.finished_at
  FROM agent_rollout_devices rd
  JOIN agent_devices d ON d.id = rd.agent_device_id
  LEFT JOIN agent_commands c ON c.id = rd.command_id
 WHERE rd.rollout_id = %(id)s
   AND (%(state)s::text IS NULL OR rd.state = %(state)s::text)
 ORDER BY rd.wave, d.device_name, rd.agent_device_id
 LIMIT %(limit)s OFFSET %(offset)s

-- name: set_status
UPDATE agent_rollouts
   SET status = %(status)s::text, status_reason = %(reason)s, updated_at = now(),
       finished_at = CASE WHEN %(status)s::text IN ('halted', 'aborted', 'completed') THEN now() ELSE finished_at END
 WHERE id = %(id)s

-- name: approve
UPDATE agent_rollouts SET status = 'running', approved_by = %(user_id)s, approved_at = now(), updated_at = now()
 WHERE id = %(id)s

-- name: open_rollouts
-- Rollouts the advance job works on, each locked for this transaction (another process skips it).
SELECT * FROM agent_rollouts WHERE status IN ('running', 'paused') ORDER BY created_at FOR UPDATE SKIP LOCKED

-- name: sync_results
-- Sent devices whose update_agent command has ended take its outcome (a late result of a
-- cancelled or timed-out command does not turn a failure into a success).
UPDATE agent_rollout_devices rd
   SET state = CASE WHEN c.status = 'completed' THEN 'succeeded' ELSE 'failed' END,
       error = CASE WHEN c.status = 'completed' THEN NULL
                    ELSE left(coalesce(c.error_message, c.status_reason, c.status), 1000) END,
       finished_at = coalesce(c.completed_at, c.status_changed_at, now())
  FROM agent_commands c
 WHERE rd.rollout_id = %(id)s AND rd.state = 'sent' AND c.id = rd.command_id
   AND c.status IN ('completed', 'failed', 'timeout', 'cancelled', 'rejected')

-- name: skip_opted_out
UPDATE agent_rollout_devices rd SET state = 'skipped', error = 'business opted out', finished_at = now()
 WHERE rd.rollout_id = %(id)s AND rd.state = 'planned'
   AND (EXISTS (SELECT 1 FROM agent_rollout_opt_outs o WHERE o.business_id = rd.business_id)
        OR EXISTS (SELECT 1 FROM agent_devices d WHERE d.id = rd.agent_device_id
                    AND (d.soft_delete OR d.status = 'disabled')))

-- name: planned_in_wave
SELECT agent_device_id FROM agent_rollout_devices
 WHERE rollout_id = %(id)s AND wave = %(wave)s AND state = 'planned'
 ORDER BY agent_device_id

-- name: mark_sent
UPDATE agent_rollout_devices SET state = 'sent', command_id = %(command_id)s
 WHERE rollout_id = %(id)s AND agent_device_id = %(agent_id)s

-- name: counts
SELECT count(*) FILTER (WHERE wave = %(wave)s AND state IN ('planned', 'sent')) AS wave_open,
       count(*) FILTER (WHERE state = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE state = 'failed') AS failed
  FROM agent_rollout_devices WHERE rollout_id = %(id)s

-- name: next_wave
UPDATE agent_rollouts SET current_wave = current_wave + 1, updated_at = now() WHERE id = %(id)s
RETURNING current_wave

-- name: abort_devices
-- Devices not yet updated are skipped; their commands still waiting for delivery are cancelled
-- by the service (the command workflow's own cancel, so the agent is told when it has one).
UPDATE agent_rollout_devices SET state = 'skipped', error = 'rollout aborted', finished_at = now()
 WHERE rollout_id = %(id)s AND state = 'planned'

-- name: undelivered_commands
SELECT rd.command_id FROM agent_rollout_devices rd
  JOIN agent_commands c ON c.id = rd.command_id
 WHERE rd.rollout_id = %(id)s AND rd.state = 'sent' AND c.status = 'pending'

-- name: opt_out
INSERT INTO agent_rollout_opt_outs (business_id, opted_out_by, reason) VALUES (%(business_id)s, %(user_id)s, %(reason)s)
ON CONFLICT (business_id) DO UPDATE SET opted_out_by = EXCLUDED.opted_out_by, opted_out_at = now(),
                                        reason = EXCLUDED.reason
RETURNING business_id, opted_out_by, opted_out_at, reason

-- name: opt_in
DELETE FROM agent_rollout_opt_outs WHERE business_id = %(business_id)s RETURNING business_id

-- name: list_opt_outs
SELECT business_id, opted_out_by, opted_out_at, reason FROM agent_rollout_opt_outs
 WHERE (%(scope)s::uuid IS NULL OR business_id = %(scope)s::uuid)
 ORDER BY opted_out_at DESC

-- name: business_visible
SELECT id FROM businesses WHERE id = %(id)s AND (%(scope)s::uuid IS NULL OR id = %(scope)s::uuid)

-- name: notify
-- For live views (console/live.py): the rollout's status with its devices counted by state, read
-- in the notifying transaction. With the counts a list redraws a rollout's progress bar from the
-- notification alone (no re-read per change, however many pages are open), for one count over
-- the rollout's rows by their index; the payload stays under 300 bytes whatever the rollout's
-- size (NOTIFY's limit is 8,000: per-wave or per-device rows would not fit a large fleet).
SELECT pg_notify('rts_rollouts', json_build_object(
           'rollout_id', r.id, 'status', r.status, 'current_wave', r.current_wave, 'waves', r.waves,
           'devices', c.devices, 'planned', c.planned, 'sent', c.sent, 'succeeded', c.succeeded,
           'failed', c.failed, 'skipped', c.skipped)::text)
  FROM agent_rollouts r
 CROSS JOIN LATERAL (SELECT count(*) AS devices, count(*) FILTER (WHERE state = 'planned') AS planned,
                            count(*) FILTER (WHERE state = 'sent') AS sent,
                            count(*) FILTER (WHERE state = 'succeeded') AS succeeded,
                            count(*) FILTER (WHERE state = 'failed') AS failed,
                            count(*) FILTER (WHERE state = 'skipped') AS skipped
                       FROM agent_rollout_devices WHERE rollout_id = r.id) c
 WHERE r.id = %(id)s

-- name: set_baseline
UPDATE agent_rollouts r
   SET baseline_finished = c.finished, baseline_failed = c.failed
  FROM (SELECT count(*) FILTER (WHERE state IN ('succeeded', 'failed')) AS finished,
               count(*) FILTER (WHERE state = 'failed') AS failed
          FROM agent_rollout_devices WHERE rollout_id = %(id)s) c
 WHERE r.id = %(id)s
