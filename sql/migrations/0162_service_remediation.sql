-- Auto-remediation (docs/services.md): restart_service commands the server issues itself, with no
-- requesting user (actor 'system' in agent_command_events and the audit log).
ALTER TABLE agent_commands ALTER COLUMN requested_by DROP NOT NULL;

-- Each attempt, for the per-hour cap, the retry pacing and the alert episode that shows them.
CREATE TABLE service_remediations (
    id               UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_device_id  UUID NOT NULL REFERENCES agent_devices(id) ON DELETE CASCADE,
    service_name     VARCHAR(255) NOT NULL,
    command_id       UUID NOT NULL REFERENCES agent_commands(id) ON DELETE CASCADE,
    trigger          VARCHAR(20) NOT NULL CHECK (trigger IN ('event', 'check')),
    requested_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- the episode this attempt belongs to, once a service_down episode is open for the service
    alert_history_id UUID REFERENCES agent_alert_history(id) ON DELETE SET NULL
);
CREATE INDEX idx_service_remediations_service ON service_remediations (agent_device_id, service_name, requested_at DESC);
CREATE INDEX idx_service_remediations_episode ON service_remediations (alert_history_id) WHERE alert_history_id IS NOT NULL;
