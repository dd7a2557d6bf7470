-- Alerting: typed rule columns for set-based evaluation, one open episode per (rule, device),
-- maintenance windows, severity -> ticket mapping, an outbox for tickets and notifications,
-- a delivery log and a record of evaluation cycles. Reasons in docs/alerts.md.

-- Rules keep the plan's `conditions` JSONB as the source of truth; the evaluator reads typed,
-- generated copies so its joins and comparisons need no JSON parsing per row.
ALTER TABLE agent_alerts
    ADD COLUMN kind VARCHAR(20) GENERATED ALWAYS AS (coalesce(conditions->>'kind', 'metric')) STORED,
    ADD COLUMN metric VARCHAR(50) GENERATED ALWAYS AS (conditions->>'metric') STORED,
    ADD COLUMN operator VARCHAR(2) GENERATED ALWAYS AS (conditions->>'operator') STORED,
    ADD COLUMN threshold DOUBLE PRECISION GENERATED ALWAYS AS ((conditions->>'threshold')::double precision) STORED,
    ADD COLUMN duration_minutes INTEGER GENERATED ALWAYS AS (coalesce((conditions->>'duration_minutes')::integer, 0)) STORED,
    ADD COLUMN aggregation VARCHAR(3) GENERATED ALWAYS AS (coalesce(conditions->>'aggregation', 'avg')) STORED,
    ADD COLUMN hysteresis DOUBLE PRECISION GENERATED ALWAYS AS ((conditions->>'hysteresis')::double precision) STORED,
    ADD COLUMN service_name VARCHAR(255) GENERATED ALWAYS AS (conditions->>'service_name') STORED,
    ADD COLUMN create_ticket BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN webhook_url TEXT,
    ADD CONSTRAINT agent_alerts_kind_check CHECK (kind IN ('metric', 'agent_offline', 'service_down')),
    ADD CONSTRAINT agent_alerts_aggregation_check CHECK (aggregation IN ('avg', 'min', 'max'));

CREATE INDEX idx_agent_alerts_eval ON agent_alerts (kind, business_id)
    WHERE is_active AND NOT soft_delete;

-- At most one open (active or acknowledged) episode per (rule, device); the evaluator inserts
-- with ON CONFLICT DO NOTHING against this index, so concurrent evaluations cannot duplicate.
CREATE UNIQUE INDEX uq_alert_history_open ON agent_alert_history (agent_alert_id, agent_device_id)
    WHERE status IN ('active', 'acknowledged');
CREATE INDEX idx_alert_history_resolved ON agent_alert_history (agent_alert_id, agent_device_id, resolved_at)
    WHERE status = 'resolved';
CREATE INDEX idx_alert_history_triggered ON agent_alert_history (triggered_at DESC);

-- When the episode's evidence window started (data time for metric rules), and the business it
-- belongs to (denormalised so business-wide lists need no join through devices).
ALTER TABLE agent_alert_history
    ADD COLUMN business_id UUID REFERENCES businesses(id) ON DELETE CASCADE,
    ADD COLUMN condition_since TIMESTAMPTZ,
    ADD COLUMN resolved_by UUID REFERENCES users(id);
CREATE INDEX idx_alert_history_business ON agent_alert_history (business_id, triggered_at DESC);

-- Maintenance windows: the whole business (both scope columns NULL), one location or one device.
CREATE TABLE alert_maintenance_windows (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    business_id UUID NOT NULL REFERENCES businesses(id) ON DELETE CASCADE,
    service_location_id UUID REFERENCES service_locations(id) ON DELETE CASCADE,
    agent_device_id UUID REFERENCES agent_devices(id) ON DELETE CASCADE,
    starts_at TIMESTAMPTZ NOT NULL,
    ends_at TIMESTAMPTZ NOT NULL,
    reason TEXT,
    created_by UUID REFERENCES users(id),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT alert_maintenance_windows_range CHECK (ends_at > starts_at)
);
CREATE INDEX idx_alert_maintenance_active ON alert_maintenance_windows (business_id, ends_at);

-- Severity -> ticket fields. Nullable so it works on a fresh database (empty priority_levels)
-- and on the real portal (an admin points each severity at the portal's own rows).
CREATE TABLE alert_severity_ticket_map (
    severity VARCHAR(50) PRIMARY KEY CHECK (severity IN ('info', 'warning', 'critical')),
    priority_level_id UUID REFERENCES priority_levels(id) ON DELETE SET NULL,
    urgency_level_id UUID REFERENCES urgency_levels(id) ON DELETE SET NULL,
    status_id UUID REFERENCES service_request_statuses(id) ON DELETE SET NULL
);
INSERT INTO alert_severity_ticket_map (severity) VALUES ('info'), ('warning'), ('critical');

-- Best effort: match existing priority levels by name. The portal's table may name its columns
-- differently; then the mapping stays NULL and an admin sets it.
DO $$
BEGIN
    UPDATE alert_severity_ticket_map m
       SET priority_level_id = (
           SELECT p.id FROM priority_levels p
            WHERE lower(p.level_name) = ANY (CASE m.severity
                    WHEN 'critical' THEN ARRAY['critical', 'urgent', 'high']
                    WHEN 'warning' THEN ARRAY['high', 'medium', 'normal']
                    ELSE ARRAY['low', 'normal'] END)
            ORDER BY array_position(CASE m.severity
                    WHEN 'critical' THEN ARRAY['critical', 'urgent', 'high']
                    WHEN 'warning' THEN ARRAY['high', 'medium', 'normal']
                    ELSE ARRAY['low', 'normal'] END, lower(p.level_name::text))
            LIMIT 1);
EXCEPTION WHEN undefined_column OR undefined_table THEN
    RAISE NOTICE 'priority_levels has no level_name: severity mapping left empty';
END
$$;

-- Work that must happen exactly once (tickets) or at least once (notifications) after an episode
-- opens or resolves, written in the evaluator's transaction and drained by the outbox job.
CREATE TABLE alert_outbox (
    id BIGSERIAL PRIMARY KEY,
    alert_history_id UUID NOT NULL REFERENCES agent_alert_history(id) ON DELETE CASCADE,
    channel VARCHAR(20) NOT NULL CHECK (channel IN ('ticket', 'webhook', 'email')),
    event VARCHAR(20) NOT NULL CHECK (event IN ('opened', 'resolved')),
    status VARCHAR(20) NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    done_at TIMESTAMPTZ,
    UNIQUE (alert_history_id, channel, event)
);
CREATE INDEX idx_alert_outbox_due ON alert_outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX idx_alert_outbox_created ON alert_outbox (created_at);

-- Every delivery attempt, successful or not.
CREATE TABLE alert_notification_log (
    id BIGSERIAL PRIMARY KEY,
    outbox_id BIGINT NOT NULL REFERENCES alert_outbox(id) ON DELETE CASCADE,
    alert_history_id UUID NOT NULL REFERENCES agent_alert_history(id) ON DELETE CASCADE,
    channel VARCHAR(20) NOT NULL,
    event VARCHAR(20) NOT NULL,
    attempt INTEGER NOT NULL,
    target TEXT,
    ok BOOLEAN NOT NULL,
    status_code INTEGER,
    error TEXT,
    duration_ms REAL NOT NULL,
    attempted_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_alert_notification_log_history ON alert_notification_log (alert_history_id, attempted_at);

-- One row per evaluation cycle: who ran it, how long it took, what it did.
CREATE TABLE alert_evaluation_runs (
    id BIGSERIAL PRIMARY KEY,
    started_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    finished_at TIMESTAMPTZ,
    instance TEXT NOT NULL,
    scope TEXT NOT NULL,
    pairs INTEGER,
    opened INTEGER,
    resolved INTEGER,
    duration_ms REAL,
    error TEXT
);
CREATE INDEX idx_alert_evaluation_runs_started ON alert_evaluation_runs (started_at DESC);
