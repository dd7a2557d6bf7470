-- The seven agent tables of the plan's 021_msp_agent_system.sql, adapted for time series.
-- Every deviation from the plan is listed with its reason in docs/schema.md.

CREATE TABLE agent_devices (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),

    business_id UUID NOT NULL REFERENCES businesses(id) ON DELETE CASCADE,
    service_location_id UUID REFERENCES service_locations(id) ON DELETE SET NULL,

    -- Deviation: the credential itself is never stored, only its SHA-256 (hex). NULL once revoked.
    agent_token_hash VARCHAR(64) UNIQUE,
    agent_token_revoked_at TIMESTAMPTZ,
    device_name VARCHAR(255) NOT NULL,
    device_type VARCHAR(50) NOT NULL DEFAULT 'unknown',

    os_type VARCHAR(50) NOT NULL,
    os_version VARCHAR(100),
    os_architecture VARCHAR(20),
    hostname VARCHAR(255),

    agent_version VARCHAR(50) NOT NULL,
    agent_last_updated TIMESTAMPTZ,

    status VARCHAR(50) NOT NULL DEFAULT 'offline'
        CONSTRAINT agent_devices_status_check CHECK (status IN ('online', 'offline', 'error', 'disabled')),
    status_changed_at TIMESTAMPTZ,
    last_heartbeat TIMESTAMPTZ,
    last_metrics_received TIMESTAMPTZ,

    cpu_model VARCHAR(255),
    total_memory_gb NUMERIC(10,2),
    total_disk_gb NUMERIC(10,2),
    ip_address INET,
    mac_address VARCHAR(17),

    monitoring_enabled BOOLEAN NOT NULL DEFAULT true,
    alerts_enabled BOOLEAN NOT NULL DEFAULT true,
    auto_remediation_enabled BOOLEAN NOT NULL DEFAULT false,
    -- Bumped whenever the server-side config for this agent changes (heartbeat's config_updated).
    config_version INTEGER NOT NULL DEFAULT 1,

    created_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    created_by UUID REFERENCES users(id),
    is_active BOOLEAN NOT NULL DEFAULT true,
    soft_delete BOOLEAN NOT NULL DEFAULT false
);

CREATE INDEX idx_agent_devices_business ON agent_devices(business_id) WHERE soft_delete = false;
CREATE INDEX idx_agent_devices_location ON agent_devices(service_location_id) WHERE soft_delete = false;
CREATE INDEX idx_agent_devices_status ON agent_devices(status, last_heartbeat);

-- Raw metrics: a hypertable (see 0003). Deviations: no per-row UUID (the key is the natural
-- (device, collected_at), which also makes re-sent batches idempotent); REAL instead of NUMERIC
-- (measured: NUMERIC(5,2) ingests ~43% slower by binary COPY and is 14% larger); no raw_metrics
-- JSONB (measured 2.6x slower ingest, 3.5x the disk; services go to agent_monitored_services);
-- no received_at (8 bytes a row for a debugging aid; the ingest log keeps batch arrival times);
-- no foreign key to agent_devices (a per-row RI check on the hottest path; the ingest path only
-- writes rows for authenticated devices, and devices are soft-deleted).
CREATE TABLE agent_metrics (
    agent_device_id UUID NOT NULL,
    collected_at TIMESTAMPTZ NOT NULL,

    cpu_percent REAL,
    memory_used_gb REAL,
    memory_percent REAL,
    disk_used_gb REAL,
    disk_percent REAL,

    load_average_1m REAL,
    load_average_5m REAL,
    load_average_15m REAL,
    uptime_seconds BIGINT,

    network_rx_bytes BIGINT,
    network_tx_bytes BIGINT,

    CONSTRAINT agent_metrics_pkey PRIMARY KEY (agent_device_id, collected_at),
    CONSTRAINT valid_percentages CHECK (
        cpu_percent >= 0 AND cpu_percent <= 100 AND
        memory_percent >= 0 AND memory_percent <= 100 AND
        disk_percent >= 0 AND disk_percent <= 100
    )
);

CREATE TABLE agent_alerts (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),

    alert_name VARCHAR(255) NOT NULL,
    alert_type VARCHAR(100) NOT NULL,
    severity VARCHAR(50) NOT NULL
        CONSTRAINT agent_alerts_severity_check CHECK (severity IN ('info', 'warning', 'critical')),

    business_id UUID NOT NULL REFERENCES businesses(id) ON DELETE CASCADE,
    agent_device_id UUID REFERENCES agent_devices(id) ON DELETE CASCADE,

    conditions JSONB NOT NULL,

    notification_enabled BOOLEAN DEFAULT true,
    notification_channels JSONB,
    notification_recipients JSONB,

    is_active BOOLEAN DEFAULT true,
    last_triggered TIMESTAMPTZ,
    trigger_count INTEGER DEFAULT 0,

    created_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    created_by UUID REFERENCES users(id),
    soft_delete BOOLEAN DEFAULT false
);

CREATE INDEX idx_agent_alerts_business ON agent_alerts(business_id) WHERE is_active = true;
CREATE INDEX idx_agent_alerts_device ON agent_alerts(agent_device_id) WHERE is_active = true;

CREATE TABLE agent_alert_history (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),

    agent_alert_id UUID NOT NULL REFERENCES agent_alerts(id) ON DELETE CASCADE,
    agent_device_id UUID NOT NULL REFERENCES agent_devices(id) ON DELETE CASCADE,

    triggered_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    resolved_at TIMESTAMPTZ,
    severity VARCHAR(50) NOT NULL,

    alert_message TEXT NOT NULL,
    -- Deviation: DOUBLE PRECISION, metric values (bytes/s rates, uptime) overflow NUMERIC(10,2).
    metric_value DOUBLE PRECISION,
    threshold_value DOUBLE PRECISION,

    notification_sent BOOLEAN DEFAULT false,
    notification_sent_at TIMESTAMPTZ,
    service_request_created UUID REFERENCES service_requests(id),

    status VARCHAR(50) DEFAULT 'active'
        CONSTRAINT agent_alert_history_status_check
        CHECK (status IN ('active', 'acknowledged', 'resolved', 'auto_resolved')),
    acknowledged_by UUID REFERENCES users(id),
    acknowledged_at TIMESTAMPTZ,
    resolution_notes TEXT
);

CREATE INDEX idx_alert_history_device_time ON agent_alert_history(agent_device_id, triggered_at DESC);
CREATE INDEX idx_alert_history_status ON agent_alert_history(status) WHERE status = 'active';

CREATE TABLE agent_commands (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),

    agent_device_id UUID NOT NULL REFERENCES agent_devices(id) ON DELETE CASCADE,

    command_type VARCHAR(100) NOT NULL,
    command_params JSONB,

    status VARCHAR(50) NOT NULL DEFAULT 'pending'
        CONSTRAINT agent_commands_status_check CHECK (status IN (
            'pending', 'sent', 'executing', 'completed', 'failed', 'timeout', 'rejected', 'cancelled'
        )),
    created_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    sent_at TIMESTAMPTZ,
    started_at TIMESTAMPTZ,
    completed_at TIMESTAMPTZ,
    timeout_seconds INTEGER DEFAULT 300,

    exit_code INTEGER,
    stdout TEXT,
    stderr TEXT,
    error_message TEXT,

    requested_by UUID NOT NULL REFERENCES users(id),
    approval_required BOOLEAN DEFAULT false,
    approved_by UUID REFERENCES users(id),
    approved_at TIMESTAMPTZ
);

CREATE INDEX idx_agent_commands_device_status ON agent_commands(agent_device_id, status, created_at DESC);
CREATE INDEX idx_agent_commands_pending ON agent_commands(status) WHERE status IN ('pending', 'sent');

CREATE TABLE agent_software_inventory (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),

    agent_device_id UUID NOT NULL REFERENCES agent_devices(id) ON DELETE CASCADE,

    software_name VARCHAR(255) NOT NULL,
    software_version VARCHAR(100),
    vendor VARCHAR(255),
    install_date DATE,

    software_type VARCHAR(100),
    is_security_software BOOLEAN DEFAULT false,

    is_active BOOLEAN DEFAULT true,
    last_seen TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,

    is_latest_version BOOLEAN,
    latest_available_version VARCHAR(100),
    is_eol BOOLEAN DEFAULT false,
    eol_date DATE
);

CREATE INDEX idx_software_inventory_device ON agent_software_inventory(agent_device_id, is_active);
CREATE INDEX idx_software_inventory_eol ON agent_software_inventory(is_eol) WHERE is_eol = true;

CREATE TABLE agent_monitored_services (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),

    agent_device_id UUID NOT NULL REFERENCES agent_devices(id) ON DELETE CASCADE,

    service_name VARCHAR(255) NOT NULL,
    service_display_name VARCHAR(255),
    service_type VARCHAR(100),

    status VARCHAR(50),
    pid INTEGER,

    should_be_running BOOLEAN DEFAULT true,
    auto_restart BOOLEAN DEFAULT false,

    last_checked TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    last_state_change TIMESTAMPTZ,
    restart_count INTEGER DEFAULT 0,

    UNIQUE (agent_device_id, service_name)
);

CREATE INDEX idx_monitored_services_device ON agent_monitored_services(agent_device_id);
