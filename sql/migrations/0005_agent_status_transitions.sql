-- Every change of an agent's status (online/offline/error/disabled), with when and why, so
-- availability can be computed later. Written by heartbeats, the presence job and ingestion.
CREATE TABLE agent_status_transitions (
    id              BIGSERIAL PRIMARY KEY,
    agent_device_id UUID        NOT NULL REFERENCES agent_devices(id) ON DELETE CASCADE,
    changed_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    from_status     VARCHAR(50),
    to_status       VARCHAR(50) NOT NULL,
    reason          TEXT        NOT NULL
);

CREATE INDEX idx_agent_status_transitions_device ON agent_status_transitions (agent_device_id, changed_at DESC);
