
-- name: insert_command
INSERT INTO agent_commands (agent_device_id, command_type, command_params, timeout_seconds, requested_by,
                            approval_required, deadline_at, status_changed_at)
VALUES (%(agent_id)s, %(command_type)s, %(params)s, %(timeout_seconds)s, %(user_id)s,
        %(approval_required)s, now() + make_interval(secs => %(pending_ttl)s), now())
RETURNING id

-- name: add_event
INSERT INTO agent_command_events (command_id, event, from_status, to_status, actor_type, actor_user_id,
                                  actor_agent_id, via, detail)
VALUES (%(command_id)s, %(event)s, %(from_status)s, %(to_status)s, %(actor_type)s, %(actor_user_id)s,
        %(actor_agent_id)s, %(via)s, %(detail)s)

-- name: notify
-- Sent inside the transaction that makes a command deliverable: listeners see it only on commit.
SELECT pg_notify(%(channel)s, %(payload)s)

-- name: command_columns
-- (fragment) A command as the portal sees it: the fields of commands/structs.Command, from ``c``
-- (agent_commands) and ``d`` (its device).
SELECT c.id, c.agent_device_id AS agent_id, d.business_id, c.command_type,
       coalesce(c.command_params, '{}'::jsonb) AS params, c.status, c.timeout_seconds, c.requested_by,
       coalesce(c.approval_required, false) AS approval_required, c.approved_by, c.approved_at, c.rejected_by,
       c.rejected_at, c.cancelled_by, c.cancelled_at, c.status_reason, c.created_at, c.status_changed_at,
       c.sent_at, c.delivered_via, c.started_at, c.completed_at, c.deadline_at, c.exit_code, c.stdout, c.stderr,
       c.stdout_truncated, c.stderr_truncated, c.error_message, c.result_received_at, c.late_result_at

-- name: command_by_id
-- Portal read: one command with its device's business. Tenancy in the WHERE: another business's
-- command is not found.
-- include: command_columns
  FROM agent_commands c
  JOIN agent_devices d ON d.id = c.agent_device_id
 WHERE c.id = %(command_id)s
   AND c.agent_device_id = %(agent_id)s
   AND d.soft_delete = false
   AND (%(scope)s::uuid IS NULL OR d.business_id = %(scope)s)

-- name: command_for_portal
-- The same, locked for a state change by the caller's transaction.
-- include: command_by_id
   FOR UPDATE OF c

-- name: command_for_agent
-- The command an agent reports on, whoever's it is (the caller turns a mismatch into a 403).
SELECT c.*
  FROM agent_commands c
 WHERE c.id = %(command_id)s
   FOR UPDATE

-- name: command_history
SELECT at, event, from_status, to_status, actor_type, actor_user_id, actor_agent_id, via, detail
  FROM agent_command_events
 WHERE command_id = %(command_id)s
 ORDER BY id

-- name: list_commands
-- include: command_columns
  FROM agent_commands c
  JOIN agent_devices d ON d.id = c.agent_device_id
 WHERE d.soft_delete = false
   AND (%(scope)s::uuid IS NULL OR d.business_id = %(scope)s)
   AND (%(agent_id)s::uuid IS NULL OR c.agent_device_id = %(agent_id)s)
   AND (%(statuses)s::text[] IS NULL OR c.status = ANY(%(statuses)s::text[]))
   AND (NOT %(awaiting_approval)s
        OR (c.status = 'pending' AND c.approval_required AND c.approved_at IS NULL))
 ORDER BY c.created_at DESC, c.id DESC
 LIMIT %(limit)s

-- name: approve
UPDATE agent_commands
   SET approved_by = %(user_id)s, approved_at = now(), status_changed_at = now(),
       deadline_at = now() + make_interval(secs => %(pending_ttl)s)
 WHERE id = %(command_id)s

-- name: reject
UPDATE agent_commands
   SET status = 'rejected', rejected_by = %(user_id)s, rejected_at = now(), status_reason = %(reason)s,
       status_changed_at = now(), deadline_at = NULL
 WHERE id = %(command_id)s

-- name: cancel
UPDATE agent_commands
   SET status = 'cancelled', cancelled_by = %(user_id)s, cancelled_at = now(), status_reason = %(reason)s,
       status_changed_at = now(), deadline_at = NULL
 WHERE id = %(command_id)s

-- name: cancel_if_pending
UPDATE agent_commands
   SET status = 'cancelled', cancelled_by = %(user_id)s, cancelled_at = now(), status_reason = %(reason)s,
       status_changed_at = now(), deadline_at = NULL
 WHERE id = %(command_id)s AND status = 'pending'

-- name: claim_deliverable
-- Hand out an agent's deliverable commands and mark them sent in one statement. FOR UPDATE SKIP
-- LOCKED plus the re-checked status mean two concurrent polls (or a poll and a WebSocket push)
-- never get the same command. The audit rows are written by the same statement.
WITH picked AS (
    SELECT id
      FROM agent_commands
     WHERE agent_device_id = %(agent_id)s
       AND status = 'pending'
       AND (approval_required = false OR approved_at IS NOT NULL)
       AND (deadline_at IS NULL OR deadline_at > now())
       -- a socket or cached token may outlive a revocation: never hand commands to a revoked agent
       AND EXISTS (SELECT 1 FROM agent_devices d
                    WHERE d.id = %(agent_id)s AND d.agent_token_revoked_at IS NULL AND d.soft_delete = false)
     ORDER BY created_at, id
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
), sent AS (
    UPDATE agent_commands c
       SET status = 'sent', sent_at = now(), status_changed_at = now(), delivered_via = %(via)s,
           deadline_at = now() + make_interval(secs => c.timeout_seconds + %(grace)s)
      FROM picked
     WHERE c.id = picked.id AND c.status = 'pending'
    RETURNING c.id, c.command_type, c.command_params, c.timeout_seconds, c.created_at
), audit AS (
    INSERT INTO agent_command_events (command_id, event, from_status, to_status, actor_type, actor_agent_id, via)
    SELECT id, 'sent', 'pending', 'sent', 'agent', %(agent_id)s, %(via)s FROM sent
)
SELECT id AS command_id, command_type, coalesce(command_params, '{}'::jsonb) AS params, timeout_seconds
  FROM sent ORDER BY created_at, id

-- name: unsend
-- A push that failed before reaching the socket: the command goes back to pending (and is
-- offered again on the agent's next connection or poll).
WITH back AS (
    UPDATE agent_commands
       SET status = 'pending', sent_at = NULL, delivered_via = NULL, status_changed_at = now(),
           deadline_at = now() + make_interval(secs => %(pending_ttl)s)
     WHERE id = ANY(%(ids)s) AND status = 'sent'
    RETURNING id
), audit AS (
    INSERT INTO agent_command_events (command_id, event, from_status, to_status, actor_type, via, detail)
    SELECT id, 'delivery_failed', 'sent', 'pending', 'system', 'ws', jsonb_build_object('error', %(error)s::text)
      FROM back
)
SELECT count(*) AS n FROM back

-- name: agents_with_deliverable
-- Of the agents connected to this instance, those with something to deliver (listener
-- (re)connect and the periodic safety sweep).
SELECT DISTINCT agent_device_id AS agent_id
  FROM agent_commands
 WHERE agent_device_id = ANY(%(agent_ids)s)
   AND status = 'pending'
   AND (approval_required = false OR approved_at IS NOT NULL)
   AND (deadline_at IS NULL OR deadline_at > now())

-- name: record_result
UPDATE agent_commands
   SET status = %(status)s,
       status_changed_at = now(),
       started_at = COALESCE(%(started_at)s, started_at, now()),
       completed_at = CASE WHEN %(final)s THEN COALESCE(%(completed_at)s, now()) ELSE completed_at END,
       exit_code = COALESCE(%(exit_code)s, exit_code),
       stdout = COALESCE(%(stdout)s, stdout),
       stderr = COALESCE(%(stderr)s, stderr),
       stdout_truncated = stdout_truncated OR %(stdout_truncated)s,
       stderr_truncated = stderr_truncated OR %(stderr_truncated)s,
       error_message = COALESCE(%(error_message)s, error_message),
       result_received_at = now(),
       deadline_at = CASE WHEN %(final)s THEN NULL ELSE deadline_at END
 WHERE id = %(command_id)s

-- name: record_late_result
-- Kept for the record; the status (timeout/cancelled) is not reopened.
UPDATE agent_commands
   SET late_result_at = now(),
       started_at = COALESCE(%(started_at)s, started_at),
       completed_at = COALESCE(%(completed_at)s, completed_at),
       exit_code = COALESCE(%(exit_code)s, exit_code),
       stdout = COALESCE(%(stdout)s, stdout),
       stderr = COALESCE(%(stderr)s, stderr),
       stdout_truncated = stdout_truncated OR %(stdout_truncated)s,
       stderr_truncated = stderr_truncated OR %(stderr_truncated)s,
       error_message = COALESCE(%(error_message)s, error_message)
 WHERE id = %(command_id)s

-- name: expire_overdue
-- Commands past their deadline become 'timeout' (a batch at a time; SKIP LOCKED so a result being
-- recorded right now wins and is not overwritten).
WITH due AS (
    SELECT id, status
      FROM agent_commands
     WHERE status IN ('pending', 'sent', 'executing')
       AND deadline_at <= now()
     ORDER BY deadline_at
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
), expired AS (
    UPDATE agent_commands c
       SET status = 'timeout', status_changed_at = now(), deadline_at = NULL,
           status_reason = CASE
               WHEN due.status = 'pending' AND c.approval_required AND c.approved_at IS NULL
                   THEN 'not approved before the deadline'
               WHEN due.status = 'pending' THEN 'not delivered before the deadline'
               ELSE 'no result before the deadline' END
      FROM due
     WHERE c.id = due.id
    RETURNING c.id, c.agent_device_id, due.status AS from_status, c.status_reason
), audit AS (
    INSERT INTO agent_command_events (command_id, event, from_status, to_status, actor_type, via, detail)
    SELECT id, 'timeout', from_status, 'timeout', 'system', 'job', jsonb_build_object('reason', status_reason)
      FROM expired
)
SELECT id, agent_device_id, from_status FROM expired
