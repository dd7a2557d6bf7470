-- Fleet views and the heartbeat config protocol (issue 3).
--
-- config_version_delivered: the config version this agent last received (registration,
-- GET /api/agents/{id}/config, or reported in a heartbeat). Heartbeat answers
-- config_updated = (config_version <> config_version_delivered), so an agent that sends the
-- plan's heartbeat body verbatim still learns that its config changed.
ALTER TABLE agent_devices ADD COLUMN config_version_delivered INTEGER NOT NULL DEFAULT 1;

-- Keyset pagination of the fleet list in its default order, globally and per business.
CREATE INDEX idx_agent_devices_name_page ON agent_devices (device_name, id) WHERE soft_delete = false;
CREATE INDEX idx_agent_devices_business_name_page
    ON agent_devices (business_id, device_name, id) WHERE soft_delete = false;

-- The presence job looks only at agents that could go offline.
CREATE INDEX idx_agent_devices_presence ON agent_devices (last_heartbeat)
    WHERE soft_delete = false AND status IN ('online', 'error');
