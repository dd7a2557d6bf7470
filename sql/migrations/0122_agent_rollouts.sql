-- Staged agent rollouts (rollouts/): one approved decision updates a fleet in waves. A canary
-- wave first, then waves of a fixed share of the devices, each started only when the previous one
-- finished; the rollout halts by itself when the failures so far exceed its threshold.
CREATE TABLE agent_rollouts (
    id                      UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    target_version          VARCHAR(50) NOT NULL,
    source                  TEXT,     -- the pip source every update_agent command gets
    business_ids            UUID[],   -- NULL: every business
    canary_percent          INTEGER NOT NULL CHECK (canary_percent BETWEEN 1 AND 100),
    wave_percent            INTEGER NOT NULL CHECK (wave_percent BETWEEN 1 AND 100),
    max_failure_percent     INTEGER NOT NULL CHECK (max_failure_percent BETWEEN 0 AND 100),
    command_timeout_seconds INTEGER NOT NULL CHECK (command_timeout_seconds > 0),
    status                  VARCHAR(20) NOT NULL CHECK (status IN ('awaiting_approval', 'running', 'paused',
                                                                   'halted', 'aborted', 'completed')),
    status_reason           TEXT,
    current_wave            INTEGER NOT NULL DEFAULT 0,
    -- the finished and failed updates when someone last resumed it: the halt threshold then judges
    -- what happened since (they looked at the earlier failures and went on)
    baseline_finished       INTEGER NOT NULL DEFAULT 0,
    baseline_failed         INTEGER NOT NULL DEFAULT 0,
    waves                   INTEGER NOT NULL,
    requested_by            UUID NOT NULL REFERENCES users(id),
    approved_by             UUID REFERENCES users(id),
    approved_at             TIMESTAMPTZ,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at             TIMESTAMPTZ
);
CREATE INDEX idx_agent_rollouts_open ON agent_rollouts (status) WHERE status IN ('running', 'paused');

CREATE TABLE agent_rollout_devices (
    rollout_id      UUID NOT NULL REFERENCES agent_rollouts(id) ON DELETE CASCADE,
    agent_device_id UUID NOT NULL REFERENCES agent_devices(id) ON DELETE CASCADE,
    business_id     UUID NOT NULL,
    wave            INTEGER NOT NULL,
    state           VARCHAR(20) NOT NULL DEFAULT 'planned'
                    CHECK (state IN ('planned', 'sent', 'succeeded', 'failed', 'skipped')),
    from_version    VARCHAR(50),
    command_id      UUID REFERENCES agent_commands(id) ON DELETE SET NULL,
    error           TEXT,
    finished_at     TIMESTAMPTZ,
    PRIMARY KEY (rollout_id, agent_device_id)
);
CREATE INDEX idx_agent_rollout_devices_wave ON agent_rollout_devices (rollout_id, wave, state);

-- A business that opted out is never updated by a rollout (devices not yet sent are skipped).
CREATE TABLE agent_rollout_opt_outs (
    business_id   UUID PRIMARY KEY REFERENCES businesses(id) ON DELETE CASCADE,
    opted_out_by  UUID REFERENCES users(id),
    opted_out_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    reason        TEXT
);
