-- The operator console (docs/console.md): sign-in sessions, sign-in attempts for rate limiting,
-- per-agent reporting intervals (bulk "change intervals"), and the notifications that feed the
-- console's live channel from every path that changes a status or an alert.

-- One row per browser session. The cookie carries a random token; only its SHA-256 is stored, so
-- a copy of this table signs nobody in. No foreign key to users: a portal hand-off may carry a
-- user the portal knows and this database does not (the JWT is the authority then); when the
-- user row exists, a deactivated or deleted user loses every session at the next request.
CREATE TABLE console_sessions (
    id            UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    token_hash    VARCHAR(64) NOT NULL UNIQUE,
    user_id       UUID        NOT NULL,
    role          VARCHAR(50) NOT NULL,
    business_id   UUID,
    source        VARCHAR(20) NOT NULL CHECK (source IN ('handoff', 'password')),
    csrf_token    VARCHAR(64) NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ NOT NULL,  -- absolute end; the idle end is last_seen_at + idle timeout
    ended_at      TIMESTAMPTZ,           -- signed out
    address       TEXT,
    user_agent    TEXT
);

CREATE INDEX idx_console_sessions_user ON console_sessions (user_id) WHERE ended_at IS NULL;
CREATE INDEX idx_console_sessions_expires ON console_sessions (expires_at);

-- E-mail + password attempts, for the per-account and per-address limits. The account is the
-- SHA-256 of the lower-cased e-mail as typed (the limit applies whether or not it exists, and
-- the table keeps no addresses of people).
CREATE TABLE console_sign_in_attempts (
    id        BIGSERIAL PRIMARY KEY,
    at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    account   VARCHAR(64) NOT NULL,
    address   TEXT        NOT NULL,
    succeeded BOOLEAN     NOT NULL
);

CREATE INDEX idx_console_sign_in_account ON console_sign_in_attempts (account, at) WHERE NOT succeeded;
CREATE INDEX idx_console_sign_in_address ON console_sign_in_attempts (address, at) WHERE NOT succeeded;
CREATE INDEX idx_console_sign_in_at ON console_sign_in_attempts (at);

-- Per-agent reporting intervals; NULL means the server's default (RTS_METRICS_INTERVAL_SECONDS,
-- RTS_HEARTBEAT_INTERVAL_SECONDS). Changing one bumps config_version (devices/bulk.sql), so the
-- agent's next heartbeat says config_updated and it fetches the new config.
ALTER TABLE agent_devices
    ADD COLUMN metrics_interval_seconds INTEGER CHECK (metrics_interval_seconds > 0),
    ADD COLUMN heartbeat_interval_seconds INTEGER CHECK (heartbeat_interval_seconds > 0);

-- The console's live channel (console/live.py LISTENs on rts_console). Triggers, so every path
-- that records a status change (heartbeat, presence sweep, ingest, PATCH, a DBA's SQL) or opens,
-- acknowledges or resolves an alert is heard, in the same transaction as the change. Payloads
-- are small JSON objects; the business id lets each API process filter by tenancy without a
-- query. Status changes and alerts are rare next to samples (those are announced once per ingest
-- flush by the console's after-ingest hook, not per row).
CREATE FUNCTION rts_console_status_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('rts_console', json_build_object(
        'kind', 'status', 'agent', NEW.agent_device_id,
        'business', (SELECT business_id FROM agent_devices WHERE id = NEW.agent_device_id),
        'from', NEW.from_status, 'to', NEW.to_status, 'at', NEW.changed_at)::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER agent_status_transitions_console
    AFTER INSERT ON agent_status_transitions
    FOR EACH ROW EXECUTE FUNCTION rts_console_status_changed();

CREATE FUNCTION rts_console_alert_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('rts_console', json_build_object(
        'kind', 'alert', 'id', NEW.id, 'agent', NEW.agent_device_id,
        'business', (SELECT business_id FROM agent_devices WHERE id = NEW.agent_device_id),
        'severity', NEW.severity, 'status', NEW.status, 'opened', TG_OP = 'INSERT')::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER agent_alert_history_console_opened
    AFTER INSERT ON agent_alert_history
    FOR EACH ROW EXECUTE FUNCTION rts_console_alert_changed();

CREATE TRIGGER agent_alert_history_console_changed
    AFTER UPDATE OF status ON agent_alert_history
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION rts_console_alert_changed();

-- The console's fleet page shows each agent's open alerts (active or acknowledged) and derives
-- warning/critical from their worst severity: a partial index keeps that to the open episodes,
-- however long the history grows.
CREATE INDEX idx_alert_history_open_by_device ON agent_alert_history (agent_device_id, severity)
    WHERE status IN ('active', 'acknowledged');
