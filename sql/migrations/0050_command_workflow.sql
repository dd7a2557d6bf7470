-- Remote commands (issue 7): deadlines, output truncation flags, who rejected or cancelled, the
-- audit trail of every state change, and the events agents report (service_crashed, ...).

-- deadline_at: when the timeout job marks the command 'timeout'. While pending it is
-- created_at/approved_at + RTS_COMMAND_PENDING_TTL_SECONDS; once sent it is
-- sent_at + timeout_seconds + RTS_COMMAND_TIMEOUT_GRACE_SECONDS; NULL once final.
ALTER TABLE agent_commands
    ADD COLUMN deadline_at        TIMESTAMPTZ,
    ADD COLUMN status_changed_at  TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    ADD COLUMN status_reason      TEXT,
    ADD COLUMN delivered_via      VARCHAR(20),
    ADD COLUMN stdout_truncated   BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN stderr_truncated   BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN result_received_at TIMESTAMPTZ,
    -- A result that arrived after the command timed out or was cancelled: kept, status unchanged.
    ADD COLUMN late_result_at     TIMESTAMPTZ,
    ADD COLUMN rejected_by        UUID REFERENCES users(id),
    ADD COLUMN rejected_at        TIMESTAMPTZ,
    ADD COLUMN cancelled_by       UUID REFERENCES users(id),
    ADD COLUMN cancelled_at       TIMESTAMPTZ;

-- The timeout job's scan: only commands that are still open.
CREATE INDEX idx_agent_commands_deadline ON agent_commands (deadline_at)
    WHERE status IN ('pending', 'sent', 'executing');

-- Every state change of a command: what, from/to, who or what caused it (a portal user, the
-- agent, the system's timeout job), through which path (api, poll, ws, job) and when.
CREATE TABLE agent_command_events (
    id             BIGSERIAL PRIMARY KEY,
    command_id     UUID        NOT NULL REFERENCES agent_commands(id) ON DELETE CASCADE,
    at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    event          VARCHAR(50) NOT NULL,
    from_status    VARCHAR(50),
    to_status      VARCHAR(50),
    actor_type     VARCHAR(20) NOT NULL CHECK (actor_type IN ('user', 'agent', 'system')),
    actor_user_id  UUID REFERENCES users(id),
    actor_agent_id UUID REFERENCES agent_devices(id) ON DELETE CASCADE,
    via            VARCHAR(20),
    detail         JSONB
);

CREATE INDEX idx_agent_command_events_command ON agent_command_events (command_id, id);

-- Events agents report over the WebSocket (or POST /api/agents/{id}/events).
CREATE TABLE agent_events (
    id              BIGSERIAL PRIMARY KEY,
    agent_device_id UUID         NOT NULL REFERENCES agent_devices(id) ON DELETE CASCADE,
    event_type      VARCHAR(100) NOT NULL,
    occurred_at     TIMESTAMPTZ  NOT NULL,
    received_at     TIMESTAMPTZ  NOT NULL DEFAULT now(),
    data            JSONB        NOT NULL DEFAULT '{}'::jsonb,
    -- Optional id chosen by the agent so a re-sent event is stored once.
    event_id        UUID,
    via             VARCHAR(20)
);

CREATE INDEX idx_agent_events_device_time ON agent_events (agent_device_id, occurred_at DESC);
CREATE UNIQUE INDEX uq_agent_events_event_id ON agent_events (agent_device_id, event_id)
    WHERE event_id IS NOT NULL;
